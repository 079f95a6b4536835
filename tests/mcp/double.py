#!/usr/bin/env python3
"""A small remote MCP server (Streamable HTTP, JSON answers) that reports what reached it.

Usage: double.py     prints {"port": N} on its first line, then serves http://127.0.0.1:N/mcp

Tools: `echo` (answers "double: <message>": a name another server also has) and `whoami`
(answers, as JSON, the credential headers every request so far carried), so tests can check
that Warden sends the upstream credential it was given and never the agent's.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN: list[dict] = []
LOCK = threading.Lock()
WATCHED = ("authorization", "x-api-key", "api-key", "cookie", "mcp-session-id", "mcp-protocol-version")
TOOLS = [
    {"name": "echo", "description": "Echoes the message back, marked as the double's.",
     "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}},
    {"name": "whoami", "description": "Tells which credential headers reached this server.",
     "inputSchema": {"type": "object", "properties": {}}},
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

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
        self._answer(405)

    def do_DELETE(self):
        self._answer(200)

    def do_POST(self):
        seen = {k: self.headers.get(k) for k in WATCHED if self.headers.get(k) is not None}
        with LOCK:
            SEEN.append(seen)
        length = int(self.headers.get("Content-Length", "0"))
        message = json.loads(self.rfile.read(length) or b"{}")
        method, rid, params = message.get("method"), message.get("id"), message.get("params") or {}
        if rid is None:
            return self._answer(202)
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                      "capabilities": {"tools": {}}, "serverInfo": {"name": "double", "version": "1"}}
            return self._answer(200, {"jsonrpc": "2.0", "id": rid, "result": result},
                                [("Mcp-Session-Id", "double-session-1")])
        if method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call" and params.get("name") == "echo":
            text = "double: " + str((params.get("arguments") or {}).get("message", ""))
            result = {"content": [{"type": "text", "text": text}]}
        elif method == "tools/call" and params.get("name") == "whoami":
            with LOCK:
                text = json.dumps(SEEN)
            result = {"content": [{"type": "text", "text": text}]}
        else:
            return self._answer(200, {"jsonrpc": "2.0", "id": rid,
                                      "error": {"code": -32601, "message": f"no method {method}"}})
        self._answer(200, {"jsonrpc": "2.0", "id": rid, "result": result})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
