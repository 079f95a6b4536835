// Node's fetch through an intercepting egress proxy, configured the way an agent's environment
// configures it: undici's EnvHttpProxyAgent reads HTTPS_PROXY (the token as the proxy
// password), and the CA to trust comes from NODE_EXTRA_CA_CERTS (read by Node at start, added
// to its default trust store), not from the agent's options.
//
// Usage: node intercept_fetch.mjs '<requests as JSON>'; env HTTPS_PROXY, NODE_EXTRA_CA_CERTS.
// The requests: [{"method", "url", "body"?}, ...]. Prints one JSON line: one result per
// request, {"status", "body"} or {"error", "code"} (the TLS or network error's code).
import { EnvHttpProxyAgent, fetch } from "undici";

const requests = JSON.parse(process.argv[2]);
const dispatcher = new EnvHttpProxyAgent();
const results = [];
for (const { method, url, body } of requests) {
  try {
    const response = await fetch(url, {
      method,
      body,
      headers: body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" },
      dispatcher,
      signal: AbortSignal.timeout(30000),
    });
    results.push({ status: response.status, body: await response.text() });
  } catch (e) {
    const cause = e.cause ?? {};
    results.push({ error: `${e.name}: ${e.message} ${cause.message ?? ""}`, code: cause.code ?? null });
  }
}
console.log(JSON.stringify(results));
await dispatcher.close();
