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
// udp_send(port, host) (one datagram, to 127.0.0.1 unless `host` says).
// heartbeat(path, detached, ignore_term) starts a child (stdio ignored, not waited for; with `detached`, in
// a session of its own: setsid) that writes the time to `path` every 100 ms for at most two minutes,
// ignoring SIGTERM with `ignore_term`: its pid. hold_tunnel(url, ca, status) starts a child in a session
// of its own that opens a CONNECT tunnel through HTTPS_PROXY, GETs `url` over TLS in it (keep-alive),
// writes `open <status>` to `status`, then holds the tunnel and writes `closed` there once it is closed
// (and exits): what it wrote first. No dependencies beyond Node.

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { createSocket } from "node:dgram";
import { createInterface } from "node:readline";

import { protocolVersion, send } from "./stdio_server.mjs";

const TOOLS = ["read_file", "write_file", "connect", "unix_connect", "signal_parent", "env", "proxy_get", "fill", "https_connect", "udp_send", "heartbeat", "hold_tunnel"].map((name) => ({
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
    case "heartbeat":
      return child("--heartbeat", args, args.detached === true);
    case "hold_tunnel": {
      const started = child("--hold-tunnel", args, true);
      if (!started.ok) return started;
      // What the child wrote first: the tunnel open, or why not.
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 50));
        let text = "";
        try {
          text = readFileSync(args.status, "utf8");
        } catch {}
        if (text) return { ok: text.startsWith("open"), pid: started.pid, status: text };
      }
      return { ok: false, code: "ETIMEDOUT", pid: started.pid };
    }
    default:
      return undefined;
  }
}

/** Starts this script in `mode` with `args` as a child not waited for, stdio ignored, in a session of
 * its own when `detached`: its pid. */
function child(mode, args, detached) {
  try {
    const c = spawn(process.execPath, [fileURLToPath(import.meta.url), mode, JSON.stringify(args)], {
      detached,
      stdio: "ignore",
    });
    c.unref();
    return { ok: true, pid: c.pid };
  } catch (e) {
    return failed(e);
  }
}

/** `--heartbeat`: the time written to `path` every 100 ms, for at most two minutes. */
function heartbeat({ path, ignore_term }) {
  if (ignore_term) process.on("SIGTERM", () => {});
  const beat = setInterval(() => writeFileSync(path, String(Date.now())), 100);
  setTimeout(() => {
    clearInterval(beat);
    process.exit(0);
  }, 120000);
}

/** `--hold-tunnel`: a CONNECT tunnel to `url`'s host through HTTPS_PROXY, a TLS GET of `url` in it
 * kept alive (trusting only `ca`), `open <status>` written to `status`; `closed` once the tunnel is
 * closed, then the process exits (after two minutes at most). */
function holdTunnel({ url, ca, status }) {
  const proxy = new URL(process.env.HTTPS_PROXY ?? "http://127.0.0.1:1");
  const target = new URL(url);
  const end = (text) => {
    try {
      writeFileSync(status, text);
    } catch {}
    process.exit(0);
  };
  setTimeout(() => end("closed: still open after two minutes"), 120000);
  const socket = connect({ port: Number(proxy.port), host: proxy.hostname });
  socket.on("error", (e) => end(`failed: ${e.code ?? e}`));
  socket.on("connect", () => socket.write(`CONNECT ${target.host} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`));
  let head = Buffer.alloc(0);
  const onHead = (d) => {
    head = Buffer.concat([head, d]);
    const at = head.indexOf("\r\n\r\n");
    if (at < 0) return;
    socket.off("data", onHead);
    const connectStatus = head.subarray(0, at).toString("utf8").split(" ")[1];
    if (connectStatus !== "200") return end(`failed: CONNECT ${connectStatus}`);
    const secure = tlsConnect({ socket, ca, host: target.hostname });
    let answered = false;
    let got = "";
    secure.on("error", (e) => end(answered ? "closed" : `failed: ${e.code ?? e}`));
    secure.on("close", () => end(answered ? "closed" : "failed: closed before the answer"));
    secure.on("secureConnect", () => secure.write(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`));
    secure.on("data", (c) => {
      got += c.toString("utf8");
      if (!answered && got.includes("\r\n\r\n")) {
        answered = true;
        writeFileSync(status, `open ${got.split(" ")[1]}`);
      }
    });
  };
  socket.on("data", onHead);
}

if (process.argv[2] === "--heartbeat") {
  heartbeat(JSON.parse(process.argv[3]));
} else if (process.argv[2] === "--hold-tunnel") {
  holdTunnel(JSON.parse(process.argv[3]));
} else {
  serveProbe();
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

/** The MCP server: each request read from stdin answered. */
function serveProbe() {
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
}
