#!/usr/bin/env python3
"""A small remote MCP server that reports what reached it.

Usage: double.py          prints {"port": N} on its first line, then serves Streamable HTTP
                          (JSON answers) at http://127.0.0.1:N/mcp
       double.py --sse    the same over the legacy HTTP+SSE transport (MCP 2024-11-05): the
                          event stream at /sse, messages posted to /messages?session_id=...

Tools: `echo` (answers "double: <message>": a name another server also has), `whoami`
(answers, as JSON, the request line and credential headers of every request so far), so tests
can check that Warden sends the upstream credential it was given and never the agent's;
`wait` (answers after `seconds`, or at once, without a result, when the request is cancelled;
creates the file `touch` names, when given, once the call has reached it, so that a client
cancels it then) and `notifications` (answers, as JSON, the notifications received and the ids `wait` was
called with), so tests can check that a cancellation reaches the server for the right request.
"""

import json
import queue
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SEEN: list[dict] = []
NOTIFIED: list[dict] = []
WAITS: list = []
CANCELLED: dict = {}
LOCK = threading.Lock()
STREAMS: dict[str, queue.Queue] = {}
WATCHED = ("authorization", "x-api-key", "api-key", "cookie", "mcp-session-id", "mcp-protocol-version")
TOOLS = [
    {"name": "echo", "description": "Echoes the message back, marked as the double's.",
     "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}},
    {"name": "whoami", "description": "Tells which credential headers reached this server.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "wait", "description": "Answers after some seconds, unless cancelled.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"},
                                                       "touch": {"type": "string"}}}},
    {"name": "notifications", "description": "Tells which notifications reached this server.",
     "inputSchema": {"type": "object", "properties": {}}},
]


def text(value) -> dict:
    return {"content": [{"type": "text", "text": value}]}


def answer(message: dict):
    """The response to one message (None for a notification or a cancelled request)."""
    method, rid, params = message.get("method"), message.get("id"), message.get("params") or {}
    if rid is None:
        with LOCK:
            NOTIFIED.append({"method": method, "params": params})
            if method == "notifications/cancelled":
                waiting = CANCELLED.get(json.dumps(params.get("requestId")))
                if waiting is not None:
                    waiting.set()
        return None
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "double", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call" and params.get("name") == "echo":
        result = text("double: " + str((params.get("arguments") or {}).get("message", "")))
    elif method == "tools/call" and params.get("name") == "whoami":
        with LOCK:
            result = text(json.dumps(SEEN))
    elif method == "tools/call" and params.get("name") == "wait":
        cancelled = threading.Event()
        with LOCK:
            WAITS.append(rid)
            CANCELLED[json.dumps(rid)] = cancelled
        touch = (params.get("arguments") or {}).get("touch")
        if touch:
            open(touch, "w").close()
        if cancelled.wait(float((params.get("arguments") or {}).get("seconds", 10))):
            return None
        result = text("waited")
    elif method == "tools/call" and params.get("name") == "notifications":
        with LOCK:
            result = text(json.dumps({"notifications": NOTIFIED, "waits": WAITS}))
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sse = False

    def log_message(self, *args):
        pass

    def _seen(self):
        seen = {k: self.headers.get(k) for k in WATCHED if self.headers.get(k) is not None}
        seen["request"] = f"{self.command} {urlparse(self.path).path}"
        with LOCK:
            SEEN.append(seen)

    def _answer(self, status, body=None, headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self.sse or urlparse(self.path).path != "/sse":
            return self._answer(405)
        self._seen()
        session = uuid.uuid4().hex
        events = queue.Queue()
        with LOCK:
            STREAMS[session] = events
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(f"event: endpoint\ndata: /messages?session_id={session}\n\n".encode())
            self.wfile.flush()
            while True:
                try:
                    message = events.get(timeout=5)
                    self.wfile.write(f"event: message\ndata: {json.dumps(message)}\n\n".encode())
                except queue.Empty:
                    self.wfile.write(b": ping\n\n")
                self.wfile.flush()
        except OSError:
            pass
        finally:
            with LOCK:
                STREAMS.pop(session, None)
            self.close_connection = True

    def do_DELETE(self):
        self._answer(200)

    def do_POST(self):
        self._seen()
        length = int(self.headers.get("Content-Length", "0"))
        message = json.loads(self.rfile.read(length) or b"{}")
        if not self.sse:
            response = answer(message)
            if response is None:
                return self._answer(202)
            headers = [("Mcp-Session-Id", "double-session-1")] if message.get("method") == "initialize" else []
            return self._answer(200, response, headers)
        session = (parse_qs(urlparse(self.path).query).get("session_id") or [""])[0]
        with LOCK:
            events = STREAMS.get(session)
        if events is None:
            return self._answer(404)
        self._answer(202)
        response = answer(message)
        if response is not None:
            events.put(response)


def main():
    Handler.sse = "--sse" in sys.argv[1:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
