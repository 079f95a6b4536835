#!/usr/bin/env node
// A stdio MCP server that tries what a hostile local server would, and reports what worked:
// each tool answers one line of JSON, `{"ok": true, ...}` or `{"ok": false, "code": "EACCES"}`.
//
// Tools: read_file(path), write_file(path, content) (a path `~/…` in its HOME), connect(port) (TCP to 127.0.0.1),
// unix_connect(path) (to a Unix socket with a path), signal_parent (signal 0 to the process that started it: Warden), env (its HOME, TMPDIR and
// parent's pid, its proxy variables), proxy_get(url) (a plain-HTTP GET through the proxy HTTP_PROXY names, raw: Node 20's
// fetch ignores proxies; `connect` takes a `host` too), fill(from, dirs, files) (`dirs` directories
// `~/fill/d<from + i>` of `files` empty files each: a tree slow to remove), https_connect(url) (a CONNECT
// through the proxy HTTPS_PROXY names, then a TLS GET through the tunnel, trusting only the CA `ca`, PEM).
// udp_send(port, host) (one datagram, to 127.0.0.1 unless `host` says). No dependencies beyond Node.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { createSocket } from "node:dgram";
import { createInterface } from "node:readline";

import { protocolVersion, send } from "./stdio_server.mjs";

const TOOLS = ["read_file", "write_file", "connect", "unix_connect", "signal_parent", "env", "proxy_get", "fill", "https_connect", "udp_send"].map((name) => ({
  name,
  description: `Sandbox probe: ${name}.`,
  inputSchema: { type: "object" },
}));

/** `path`, with a leading `~/` in HOME (which the test cannot know before the process starts). */
function expand(path) {
  return typeof path === "string" && path.startsWith("~/") ? `${process.env.HOME}/${path.slice(2)}` : path;
}

/** What a failed attempt is reported as. */
function failed(e) {
  return { ok: false, code: e.code ?? String(e) };
}

/** Runs tool `name` with `args`: what it found. */
async function run(name, args) {
  switch (name) {
    case "read_file":
      try {
        return { ok: true, text: readFileSync(expand(args.path), "utf8").slice(0, 200) };
      } catch (e) {
        return failed(e);
      }
    case "write_file":
      try {
        writeFileSync(expand(args.path), args.content ?? "");
        return { ok: true };
      } catch (e) {
        return failed(e);
      }
    case "connect":
    case "unix_connect":
      return await new Promise((resolve) => {
        const socket =
          name === "connect" ? connect({ port: args.port, host: args.host ?? "127.0.0.1" }) : connect(args.path);
        socket.setTimeout(5000, () => {
          socket.destroy();
          resolve({ ok: false, code: "ETIMEDOUT" });
        });
        socket.on("connect", () => {
          socket.destroy();
          resolve({ ok: true });
        });
        socket.on("error", (e) => resolve(failed(e)));
      });
    case "signal_parent":
      try {
        process.kill(process.ppid, 0);
        return { ok: true };
      } catch (e) {
        return failed(e);
      }
    case "env":
      return {
        ok: true,
        home: process.env.HOME,
        tmpdir: process.env.TMPDIR,
        ppid: process.ppid,
        http_proxy: process.env.HTTP_PROXY,
        https_proxy: process.env.https_proxy,
        node_use_env_proxy: process.env.NODE_USE_ENV_PROXY,
      };
    case "proxy_get":
      return await proxyGet(args.url);
    case "fill":
      try {
        for (let d = args.from ?? 0; d < (args.from ?? 0) + args.dirs; d++) {
          const dir = `${process.env.HOME}/fill/d${d}`;
          mkdirSync(dir, { recursive: true });
          for (let f = 0; f < args.files; f++) writeFileSync(`${dir}/f${f}`, "");
        }
        return { ok: true };
      } catch (e) {
        return failed(e);
      }
    case "https_connect":
      return await httpsConnect(args.url, args.ca);
    case "udp_send":
      return await new Promise((resolve) => {
        const host = args.host ?? "127.0.0.1";
        let socket;
        try {
          socket = createSocket(host.includes(":") ? "udp6" : "udp4");
        } catch (e) {
          return resolve(failed(e));
        }
        const done = (result) => {
          try {
            socket.close();
          } catch {}
          resolve(result);
        };
        socket.on("error", (e) => done(failed(e)));
        socket.send("from-the-probe", args.port, host, (e) => done(e ? failed(e) : { ok: true }));
      });
    default:
      return undefined;
  }
}

/** GET `url` through the proxy of HTTP_PROXY: the status code and body it answered. */
function proxyGet(url) {
  const proxy = new URL(process.env.HTTP_PROXY ?? "http://127.0.0.1:1");
  const target = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ port: Number(proxy.port), host: proxy.hostname });
    const chunks = [];
    socket.setTimeout(10000, () => {
      socket.destroy();
      resolve({ ok: false, code: "ETIMEDOUT" });
    });
    socket.on("connect", () => {
      socket.write(`GET ${url} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`);
    });
    socket.on("data", (d) => chunks.push(d));
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const [head, ...rest] = text.split("\r\n\r\n");
      resolve({ ok: true, status: Number(head.split(" ")[1]), body: rest.join("\r\n\r\n").slice(0, 200) });
    });
    socket.on("error", (e) => resolve(failed(e)));
  });
}

/** CONNECT to `url`'s host through the proxy of HTTPS_PROXY, then GET `url` over TLS in the
 * tunnel, trusting only `ca`: the CONNECT's status, and the GET's status and body. */
function httpsConnect(url, ca) {
  const proxy = new URL(process.env.HTTPS_PROXY ?? process.env.https_proxy ?? "http://127.0.0.1:1");
  const target = new URL(url);
  return new Promise((resolve) => {
    const done = (found) => {
      socket.destroy();
      resolve(found);
    };
    const socket = connect({ port: Number(proxy.port), host: proxy.hostname });
    socket.setTimeout(10000, () => done({ ok: false, code: "ETIMEDOUT" }));
    socket.on("error", (e) => done(failed(e)));
    socket.on("connect", () => socket.write(`CONNECT ${target.host} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`));
    let head = Buffer.alloc(0);
    const onHead = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onHead);
      const connectStatus = Number(head.subarray(0, end).toString("utf8").split(" ")[1]);
      if (connectStatus !== 200) return done({ ok: false, connect_status: connectStatus });
      const secure = tlsConnect({ socket, ca, host: target.hostname });
      const chunks = [];
      secure.on("error", (e) => done({ ...failed(e), connect_status: connectStatus }));
      secure.on("secureConnect", () =>
        secure.write(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`),
      );
      secure.on("data", (c) => chunks.push(c));
      secure.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const [status, ...rest] = text.split("\r\n\r\n");
        done({
          ok: true,
          connect_status: connectStatus,
          status: Number(status.split(" ")[1]),
          body: rest.join("\r\n\r\n").slice(0, 400),
        });
      });
    };
    socket.on("data", onHead);
  });
}

createInterface({ input: process.stdin }).on("line", async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  if (request.id === undefined || request.id === null) return;
  const params = request.params ?? {};
  const reply = (result) => send({ jsonrpc: "2.0", id: request.id, result });
  switch (request.method) {
    case "initialize":
      return reply({
        protocolVersion: protocolVersion(params),
        capabilities: { tools: {} },
        serverInfo: { name: "sandbox-probe", version: "1.0.0" },
      });
    case "ping":
      return reply({});
    case "tools/list":
      return reply({ tools: TOOLS });
    case "tools/call": {
      const found = await run(params.name, params.arguments ?? {});
      if (found === undefined) break;
      return reply({ content: [{ type: "text", text: JSON.stringify(found) }] });
    }
  }
  send({ jsonrpc: "2.0", id: request.id, error: { code: -32601, message: `not found: ${request.method}` } });
});
