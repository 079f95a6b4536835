"""Calls Warden with the official `anthropic` SDK and prints one JSON line with what it parsed.

Usage: BASE_URL=http://127.0.0.1:PORT/anthropic API_KEY=<warden token> python anthropic_messages.py MODE... [--model M]
MODE: message | stream | tools | tools-stream | propose | propose-stream
      (with --propose '[{"name":..,"arguments":{..}}]': the fake model proposes a call to each of these tools)
Prints {"<mode>": result, ...}; SDK errors become {"error": {...}} (exit 0) so the caller can assert on them.
"""

import argparse
import json
import os
import sys

import anthropic

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["location"],
        },
    }
]

# As OpenClaw sends it: the system prompt as two blocks, the first cache-marked.
SYSTEM = [
    {"type": "text", "text": "You are a helpful agent.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Answer briefly."},
]

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def text_of(message):
    return "".join(block.text for block in message.content if block.type == "text")


def usage_of(usage):
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


def tool_uses(message):
    return [{"id": b.id, "name": b.name, "input": b.input} for b in message.content if b.type == "tool_use"]


def message(client, model):
    raw = client.messages.with_raw_response.create(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES)
    msg = raw.parse()
    return {
        "id": msg.id,
        "model": msg.model,
        "text": text_of(msg),
        "stop_reason": msg.stop_reason,
        "usage": usage_of(msg.usage),
        "headers": {"x-warden-decision": raw.headers.get("x-warden-decision")},
    }


def stream(client, model):
    """`messages.stream()`: the helper that accumulates the stream (`get_final_message()`)."""
    pieces = []
    with client.messages.stream(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES) as events:
        for text in events.text_stream:
            pieces.append(text)
        final = events.get_final_message()
        headers = {"x-warden-decision": events.response.headers.get("x-warden-decision")}
    return {
        "text": "".join(pieces),
        "final_text": text_of(final),
        "deltas": len(pieces),
        "stop_reason": final.stop_reason,
        "usage": usage_of(final.usage),
        "headers": headers,
    }


def tools(client, model):
    msg = client.messages.create(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES, tools=TOOLS)
    return {"tool_uses": tool_uses(msg), "text": text_of(msg), "stop_reason": msg.stop_reason, "usage": usage_of(msg.usage)}


def tools_stream(client, model):
    json_deltas = 0
    with client.messages.stream(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES, tools=TOOLS) as events:
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                json_deltas += 1
        final = events.get_final_message()
    return {
        "tool_uses": tool_uses(final),
        "text": text_of(final),
        "input_json_deltas": json_deltas,
        "stop_reason": final.stop_reason,
        "usage": usage_of(final.usage),
    }


PROPOSE = []


def propose_tools():
    """Tools whose description makes the fake model propose a call with this input."""
    return [
        {
            "name": p["name"],
            "description": "propose:" + json.dumps(p["arguments"], separators=(",", ":")),
            "input_schema": {"type": "object", "properties": {}},
        }
        for p in PROPOSE
    ]


def propose(client, model):
    msg = client.messages.create(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES, tools=propose_tools())
    return {"tool_uses": tool_uses(msg), "text": text_of(msg), "stop_reason": msg.stop_reason}


def propose_stream(client, model):
    """`messages.stream()` accumulates and checks the rewritten stream (block indices included)."""
    with client.messages.stream(model=model, max_tokens=200, system=SYSTEM, messages=MESSAGES, tools=propose_tools()) as events:
        for _ in events:
            pass
        final = events.get_final_message()
    return {"tool_uses": tool_uses(final), "text": text_of(final), "stop_reason": final.stop_reason, "usage": usage_of(final.usage)}


DEFAULT_MODEL = "claude-sonnet-4-5"

MODES = {
    "message": message,
    "stream": stream,
    "tools": tools,
    "tools-stream": tools_stream,
    "propose": propose,
    "propose-stream": propose_stream,
}


def call(mode, client, model):
    try:
        return MODES[mode](client, model)
    except anthropic.APIStatusError as e:
        return {
            "error": {
                "status": e.status_code,
                "class": type(e).__name__,
                "message": e.message,
                "body": e.body,
                "headers": {k: v for k, v in e.response.headers.items() if k.startswith(("x-warden", "retry-after"))},
            }
        }
    except anthropic.APIConnectionError as e:
        return {"error": {"class": type(e).__name__, "message": str(e)}}
    except anthropic.APIError as e:
        # An error event inside a stream.
        return {"error": {"class": type(e).__name__, "message": e.message, "body": e.body}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("modes", nargs="+", choices=sorted(MODES))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--propose", default="[]")
    args = parser.parse_args()
    PROPOSE.extend(json.loads(args.propose))
    client = anthropic.Anthropic(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0, timeout=30)
    result = {mode: call(mode, client, args.model) for mode in args.modes}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
