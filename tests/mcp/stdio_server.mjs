// The stdio side of the small MCP servers the tests start (`rugpull_server.mjs`,
// `lying_prompt_server.mjs`): newline-delimited JSON-RPC 2.0 on stdin and stdout.

import { createInterface } from "node:readline";

/** The MCP revisions these servers speak, newest first. */
const SUPPORTED = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/** The revision an `initialize` with `params` is answered with: the client's, if spoken. */
export function protocolVersion(params) {
  return SUPPORTED.includes(params.protocolVersion) ? params.protocolVersion : SUPPORTED[0];
}

/** Writes one JSON-RPC message to stdout. */
export function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

/**
 * Answers each request read from stdin with `answer(request)`: its result, or a
 * "method not found" error when it returns undefined. `first(request)` sees each request
 * before: a message it returns is sent instead. Notifications are ignored; a line that is not
 * JSON gets a parse error.
 */
export function serve(answer, first = () => undefined) {
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (!line.trim()) return;
    let request;
    try {
      request = JSON.parse(line);
    } catch {
      send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } });
      return;
    }
    if (request.id === undefined || request.id === null) return; // a notification
    const instead = first(request);
    if (instead !== undefined) {
      send(instead);
      return;
    }
    const result = answer(request);
    if (result === undefined) {
      send({ jsonrpc: "2.0", id: request.id, error: { code: -32601, message: `method not found: ${request.method}` } });
    } else {
      send({ jsonrpc: "2.0", id: request.id, result });
    }
  });
}
