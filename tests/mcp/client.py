#!/usr/bin/env python3
"""Drives a Warden MCP endpoint with the official MCP Python SDK (`mcp` on PyPI).

Usage: client.py URL STEPS_JSON [SAMPLING_REPLY]
       (env API_KEY: the agent's token; WARDEN_PID: Warden's pid; TRANSPORT: `streamable_http`,
       the default, or `sse`, the legacy HTTP+SSE transport with URL its event stream)

Opens one session, runs each step of STEPS_JSON (a JSON list) in it, and
prints one JSON object: {"initialize": {...}, "steps": [result, ...]}. Steps:
  {"op": "list_tools"} | {"op": "list_prompts"} | {"op": "list_resources"}
  {"op": "call", "name": N, "arguments": {...}, "progress": true, "meta": {...}}
  {"op": "cancel_call", "name": N, "arguments": {...}, "after": S}
                                          abandons the call after S seconds (the SDK then
                                          sends notifications/cancelled); {"cancelled": true}
  {"op": "cancel_call", "name": N, "arguments": {...}, "when": P}
                                          the same, once file P exists (at most 240 s): the
                                          server creates it when the call reaches it
  {"op": "read_resource", "uri": U} | {"op": "get_prompt", "name": N, "arguments": {...}}
  {"op": "kill_upstream", "pattern": P}   kill Warden's child processes whose command line has P
  {"op": "sleep", "seconds": S}
  {"op": "touch", "path": P}              creates file P (tells the test where the session is)
  {"op": "wait_for", "path": P}           waits (at most 240 s: the test may start commands
                                          first, slow on a loaded machine) until file P exists
A JSON-RPC error a step meets is its result: {"error": {"code": C, "message": M}}.
With SAMPLING_REPLY the client offers sampling and answers every sampling/createMessage
request with that text; the output then counts them ("sampled").
"""

import asyncio
import json
import os
import signal
import sys

try:
    import httpx2 as httpx  # mcp >= 2 ships on httpx2
except ImportError:
    import httpx
import anyio
from mcp import ClientSession
from mcp.client.sse import sse_client
try:
    from mcp.shared.exceptions import MCPError as McpError  # mcp >= 2
except ImportError:
    from mcp.shared.exceptions import McpError

try:
    from mcp.client.streamable_http import streamable_http_client as _http_client

    _NEW_API = True
except ImportError:  # mcp < 1.24
    from mcp.client.streamable_http import streamablehttp_client as _http_client

    _NEW_API = False


def _children_of(root: int) -> list[int]:
    """Every descendant process of `root`."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_upstream(pattern: str) -> int:
    killed = 0
    for pid in _children_of(int(os.environ["WARDEN_PID"])):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _field(obj, snake: str, camel: str):
    """A field of an SDK type: snake_case in mcp >= 2, camelCase before."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


def _text(content) -> str:
    return "\n".join(getattr(c, "text", "") for c in content if getattr(c, "type", "") == "text")


async def _step(session: ClientSession, step: dict) -> dict:
    op = step["op"]
    try:
        if op == "list_tools":
            return {"names": [t.name for t in (await session.list_tools()).tools]}
        if op == "list_prompts":
            return {"names": [p.name for p in (await session.list_prompts()).prompts]}
        if op == "list_resources":
            return {"uris": [str(r.uri) for r in (await session.list_resources()).resources]}
        if op == "call":
            seen = []

            async def progress(value, total=None, message=None):
                seen.append(value)

            extra = {"meta": step["meta"]} if "meta" in step else {}
            result = await session.call_tool(
                step["name"],
                step.get("arguments", {}),
                progress_callback=progress if step.get("progress") else None,
                **extra,
            )
            is_error = bool(_field(result, "is_error", "isError"))
            meta = getattr(result, "meta", None)
            return {"isError": is_error, "text": _text(result.content), "progress": len(seen), "meta": meta}
        if op == "cancel_call":
            if "when" not in step:
                with anyio.move_on_after(step["after"]) as scope:
                    await session.call_tool(step["name"], step.get("arguments", {}))
                return {"cancelled": scope.cancelled_caught}
            answered = []
            async with anyio.create_task_group() as calls:

                async def call():
                    await session.call_tool(step["name"], step.get("arguments", {}))
                    answered.append(True)
                    calls.cancel_scope.cancel()

                calls.start_soon(call)
                for _ in range(2400):
                    if os.path.exists(step["when"]):
                        break
                    await anyio.sleep(0.1)
                calls.cancel_scope.cancel()
            return {"cancelled": not answered}
        if op == "read_resource":
            from pydantic import AnyUrl, ValidationError

            # mcp >= 2 takes the URI as a string, earlier releases as an AnyUrl.
            try:
                result = await session.read_resource(step["uri"])
            except ValidationError:
                result = await session.read_resource(AnyUrl(step["uri"]))
            return {"texts": [getattr(c, "text", None) for c in result.contents]}
        if op == "get_prompt":
            result = await session.get_prompt(step["name"], step.get("arguments", {}))
            return {
                "messages": len(result.messages),
                "description": result.description,
                "texts": [getattr(m.content, "text", None) for m in result.messages],
            }
        if op == "kill_upstream":
            return {"killed": _kill_upstream(step["pattern"])}
        if op == "sleep":
            await asyncio.sleep(step["seconds"])
            return {}
        if op == "touch":
            open(step["path"], "w").close()
            return {}
        if op == "wait_for":
            for _ in range(2400):
                if os.path.exists(step["path"]):
                    return {}
                await asyncio.sleep(0.1)
            return {"error": {"code": 0, "message": f"{step['path']} did not appear"}}
        return {"error": {"code": 0, "message": f"unknown step {op}"}}
    except McpError as e:
        return {"error": {"code": e.error.code, "message": e.error.message}}


async def main() -> None:
    url, steps = sys.argv[1], json.loads(sys.argv[2])
    reply = sys.argv[3] if len(sys.argv) > 3 else None
    sampled = []

    async def sampling(context, params):
        from mcp import types

        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=reply), model="e2e"
        )

    token = os.environ.get("API_KEY", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: dict = {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60.0)) as http:
        if os.environ.get("TRANSPORT", "streamable_http") == "sse":
            transport = sse_client(url, headers=headers, timeout=60.0)
        elif _NEW_API:
            transport = _http_client(url, http_client=http)
        else:
            transport = _http_client(url, headers=headers)
        async with transport as streams:
            read, write = streams[0], streams[1]
            options = {"sampling_callback": sampling} if reply is not None else {}
            async with ClientSession(read, write, **options) as session:
                init = await session.initialize()
                out["initialize"] = {
                    "protocolVersion": _field(init, "protocol_version", "protocolVersion"),
                    "server": _field(init, "server_info", "serverInfo").name,
                    "capabilities": sorted(init.capabilities.model_dump(exclude_none=True)),
                    "instructions": init.instructions,
                }
                out["steps"] = [await _step(session, s) for s in steps]
                out["sampled"] = len(sampled)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
