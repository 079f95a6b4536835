// The official TypeScript MCP SDK's client through a connection that drops: the first answer
// stream of a POST is cut after its first chunk (the socket is closed, as when a network
// drops), and the SDK is left to resume it by itself (GET with Last-Event-ID).
//
// Usage: node resume_client.mjs <url> <token> <tool> <arguments as JSON>
// Prints one JSON line: the tool result, the progress notifications the agent saw, and the
// Last-Event-ID of every GET the SDK sent.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, tool, args] = process.argv.slice(2);
const resumedWith = [];
let cut = false;

// fetch, with the first event stream answering a POST cut after its first chunk.
async function cuttingFetch(input, init = {}) {
  const method = (init.method ?? "GET").toUpperCase();
  if (method === "GET") {
    resumedWith.push(new Headers(init.headers).get("last-event-id"));
  }
  const response = await fetch(input, init);
  const type = response.headers.get("content-type") ?? "";
  if (method !== "POST" || cut || !type.startsWith("text/event-stream")) {
    return response;
  }
  cut = true;
  const reader = response.body.getReader();
  let chunks = 0;
  const body = new ReadableStream({
    async pull(controller) {
      if (chunks++ === 0) {
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
        return;
      }
      await reader.cancel();
      controller.error(new TypeError("the connection dropped"));
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
  fetch: cuttingFetch,
  reconnectionOptions: {
    initialReconnectionDelay: 500,
    maxReconnectionDelay: 2000,
    reconnectionDelayGrowFactor: 1.5,
    maxRetries: 3,
  },
});
const errors = [];
const client = new Client({ name: "warden-e2e-resume", version: "1.0.0" });
await client.connect(transport);
transport.onerror = (e) => errors.push(String(e?.message ?? e));
const progress = [];
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) }, undefined, {
  onprogress: (p) => progress.push(p.progress),
  timeout: 30000,
});
await client.close();
console.log(
  JSON.stringify({
    isError: result.isError ?? false,
    text: result.content?.[0]?.text ?? null,
    progress,
    cut,
    resumedWith: resumedWith.filter((id) => id !== null),
    errors,
  }),
);
