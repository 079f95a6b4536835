// Node's fetch through undici's ProxyAgent, the token as a Bearer proxy credential.
//
// Usage: node fetch.mjs <proxy url> <token> <ca file> <url>...
// Prints one JSON line: [{"status", "body"} or {"error"}, ...], one per URL.
import { readFileSync } from "node:fs";
import { ProxyAgent, fetch } from "undici";

const [proxy, token, caFile, ...urls] = process.argv.slice(2);
const dispatcher = new ProxyAgent({
  uri: proxy,
  token: `Bearer ${token}`,
  requestTls: { ca: readFileSync(caFile, "utf8") },
});
const results = [];
for (const url of urls) {
  try {
    const response = await fetch(url, { dispatcher, signal: AbortSignal.timeout(30000) });
    results.push({ status: response.status, body: await response.text() });
  } catch (e) {
    results.push({ error: `${e.name}: ${e.message} ${e.cause ? e.cause.message : ""}` });
  }
}
console.log(JSON.stringify(results));
await dispatcher.close();
