// The official TypeScript MCP SDK's client running a tool as a task through Warden (MCP
// 2025-11-25 tasks, the SDK's experimental tasks API), and asking about that task from
// elsewhere: another agent, and another session of the same agent.
//
// Usage: node tasks_client.mjs <url> <token> <other agent's token> <tool> <arguments as JSON>
// Prints one JSON line: what Warden offered, the task's messages (created, statuses, result),
// what tasks/list and a second tasks/result answered the creator, and what the others got.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token, otherToken, tool, args] = process.argv.slice(2);

async function connect(name, bearer, capabilities) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
  });
  const client = new Client({ name, version: "1.0.0" }, { capabilities });
  await client.connect(transport);
  return client;
}

// What a call raises, or null.
async function refusal(call) {
  try {
    await call();
    return null;
  } catch (e) {
    return { code: e?.code ?? null, message: String(e?.message ?? e) };
  }
}

const text = (result) => result?.content?.find((c) => c.type === "text")?.text ?? null;

const plain = await connect("warden-e2e-no-tasks", token, {});
const offeredWithout = plain.getServerCapabilities()?.tasks ?? null;
await plain.close();

const client = await connect("warden-e2e-tasks", token, { tasks: {} });
const offered = client.getServerCapabilities()?.tasks ?? null;
await client.listTools();
const messages = [];
let taskId = null;
for await (const m of client.experimental.tasks.callToolStream(
  { name: tool, arguments: JSON.parse(args) },
  CallToolResultSchema,
  { task: { ttl: 60000 }, timeout: 30000 },
)) {
  if (m.type === "taskCreated") {
    taskId = m.task.taskId;
    messages.push({ type: m.type, status: m.task.status, ttl: m.task.ttl, pollInterval: m.task.pollInterval ?? null });
  } else if (m.type === "taskStatus") {
    messages.push({ type: m.type, status: m.task.status });
  } else if (m.type === "result") {
    messages.push({ type: m.type, isError: m.result.isError ?? false, text: text(m.result) });
  } else {
    messages.push({ type: m.type, error: String(m.error?.message ?? m.error) });
  }
}
const listed = (await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);
const again = text(await client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema));

const other = await connect("warden-e2e-other-agent", otherToken, { tasks: {} });
const otherAgent = {
  get: await refusal(() => other.experimental.tasks.getTask(taskId)),
  result: await refusal(() => other.experimental.tasks.getTaskResult(taskId, CallToolResultSchema)),
  cancel: await refusal(() => other.experimental.tasks.cancelTask(taskId)),
  listed: (await other.experimental.tasks.listTasks()).tasks.map((t) => t.taskId),
};
await other.close();

const second = await connect("warden-e2e-second-session", token, { tasks: {} });
const otherSession = {
  get: await refusal(() => second.experimental.tasks.getTask(taskId)),
  result: await refusal(() => second.experimental.tasks.getTaskResult(taskId, CallToolResultSchema)),
  listed: (await second.experimental.tasks.listTasks()).tasks.map((t) => t.taskId),
};
await second.close();
await client.close();

console.log(
  JSON.stringify({ offered, offeredWithout, taskId, messages, listed, again, otherAgent, otherSession }),
);
