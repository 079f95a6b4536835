#!/usr/bin/env node
// Prints the `tools/list` result of a stdio MCP server as JSON: how the fixtures in
// gateway/tests/fixtures/mcp/ were made.
//
//   node tests/mcp/dump_tools.mjs npx -y @modelcontextprotocol/server-everything stdio
//   node tests/mcp/dump_tools.mjs npx -y @modelcontextprotocol/server-filesystem /tmp

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const [command, ...args] = process.argv.slice(2);
const server = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] });
const waiting = new Map();
createInterface({ input: server.stdout }).on("line", (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  const resolve = waiting.get(message.id);
  if (resolve) {
    waiting.delete(message.id);
    resolve(message);
  }
});
let next = 1;
const call = (method, params) =>
  new Promise((resolve) => {
    const id = next++;
    waiting.set(id, resolve);
    server.stdin.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
  });

const timer = setTimeout(() => {
  console.error("no answer within 60 s");
  process.exit(1);
}, 60_000);
const init = await call("initialize", {
  protocolVersion: "2025-06-18",
  capabilities: {},
  clientInfo: { name: "warden-fixtures", version: "0" },
});
server.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) + "\n");
const tools = [];
let cursor;
do {
  const page = await call("tools/list", cursor ? { cursor } : {});
  tools.push(...page.result.tools);
  cursor = page.result.nextCursor;
} while (cursor);
clearTimeout(timer);
console.log(
  JSON.stringify({ server: init.result.serverInfo, protocolVersion: init.result.protocolVersion, tools }, null, 2),
);
server.kill();
