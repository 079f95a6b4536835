// Preloaded (`node --import ./loopback.mjs ...`) into the reference MCP servers the tests run
// over HTTP: they listen on every interface when given only a port; this makes such a listen
// take 127.0.0.1, so a test's server is never reachable from outside the machine.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const byPort = typeof port === "number" || (typeof port === "string" && /^\d+$/.test(port));
  if (byPort && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
