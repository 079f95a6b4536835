// A headless Chromium (Debian `chromium`) driven by playwright-core for the end-to-end tests:
// one browser, one context, one page, and optionally a virtual WebAuthn authenticator (the
// DevTools `WebAuthn` domain), driven by commands read from stdin.
//
// Usage: node tests/browser/drive.mjs
//   stdin:  one JSON command per line, e.g. {"cmd":"goto","url":"http://localhost:8080/"}
//   stdout: one JSON answer per command, in order: {"ok":true,...} or {"ok":false,"error":"..."};
//           the first line, once the browser is up, is {"ok":true,"ready":true,"version":"..."}
//   Every command is bounded: `timeout_ms` (default 15000). stdin closed or {"cmd":"close"}
//   closes the browser and exits.
// Env:  WARDEN_E2E_CHROMIUM   the browser binary (default /usr/bin/chromium)
//
// Commands (fields beside `cmd`):
//   authenticator [options]     adds a virtual authenticator (ctap2, internal transport,
//                               resident keys, user verification that succeeds; `options`
//                               overrides any of them) → {authenticator_id}
//   credentials [with_private_keys]  the authenticator's credentials → {credentials: [{
//                               credential_id (base64url), rp_id, user_handle, sign_count,
//                               resident, private_key (only when asked)}]}
//   add_credential credential   puts a credential (as `credentials` gives it, with its
//                               private_key) into the authenticator
//   user_verified value         whether the authenticator's user verification succeeds
//   goto url                    → {url, status}
//   eval expression             evaluates a JavaScript expression in the page (awaited when
//                               it is a promise) → {value} (JSON-serialisable)
//   click selector | fill selector value | wait selector | text selector → {value}
//   screenshot path [full_page] writes a PNG → {path}
//   viewport width height       resizes the page's viewport (default 1280x800; 390x844 is a phone)
//   url                         → {url}
//   close
// Page errors and console lines are kept; a failed command returns the last few as `page_log`.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.WARDEN_E2E_CHROMIUM || '/usr/bin/chromium';
const DEFAULT_TIMEOUT_MS = 15000;

function send(answer) {
  process.stdout.write(JSON.stringify(answer) + '\n');
}

// `promise`, or an error saying `what` took longer than `limit` ms once `ms` have passed.
function withTimeout(promise, ms, what, limit = ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${limit} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function b64urlFromB64(text) {
  return text.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function b64FromB64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  return b64 + '='.repeat((4 - (b64.length % 4)) % 4);
}

let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 60000,
    args: ['--disable-dev-shm-usage', '--no-first-run', '--disable-gpu'],
  });
} catch (e) {
  send({ ok: false, error: `cannot start ${executablePath}: ${e.message}` });
  process.exit(1);
}
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const pageLog = [];
page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
const cdp = await context.newCDPSession(page);
let authenticatorId = null;

function needAuthenticator() {
  if (!authenticatorId) throw new Error('no virtual authenticator: send {"cmd":"authenticator"} first');
  return authenticatorId;
}

const commands = {
  async authenticator(c) {
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const options = {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
      ...(c.options || {}),
    };
    const r = await cdp.send('WebAuthn.addVirtualAuthenticator', { options });
    authenticatorId = r.authenticatorId;
    return { authenticator_id: authenticatorId };
  },
  async credentials(c) {
    const r = await cdp.send('WebAuthn.getCredentials', { authenticatorId: needAuthenticator() });
    return {
      credentials: r.credentials.map((k) => ({
        credential_id: b64urlFromB64(k.credentialId),
        rp_id: k.rpId,
        user_handle: k.userHandle ? b64urlFromB64(k.userHandle) : null,
        sign_count: k.signCount,
        resident: k.isResidentCredential,
        ...(c.with_private_keys ? { private_key: k.privateKey } : {}),
      })),
    };
  },
  async add_credential(c) {
    const k = c.credential;
    await cdp.send('WebAuthn.addCredential', {
      authenticatorId: needAuthenticator(),
      credential: {
        credentialId: b64FromB64url(k.credential_id),
        isResidentCredential: Boolean(k.resident),
        rpId: k.rp_id,
        privateKey: k.private_key,
        ...(k.user_handle ? { userHandle: b64FromB64url(k.user_handle) } : {}),
        signCount: k.sign_count ?? 0,
      },
    });
    return {};
  },
  async user_verified(c) {
    await cdp.send('WebAuthn.setUserVerified', {
      authenticatorId: needAuthenticator(),
      isUserVerified: Boolean(c.value),
    });
    return {};
  },
  async goto(c, timeout) {
    const r = await page.goto(c.url, { timeout, waitUntil: 'load' });
    return { url: page.url(), status: r ? r.status() : null };
  },
  async eval(c) {
    const value = await page.evaluate(c.expression);
    return { value: value === undefined ? null : value };
  },
  async click(c, timeout) {
    await page.click(c.selector, { timeout });
    return {};
  },
  async fill(c, timeout) {
    await page.fill(c.selector, c.value, { timeout });
    return {};
  },
  async wait(c, timeout) {
    await page.waitForSelector(c.selector, { timeout });
    return {};
  },
  async text(c, timeout) {
    return { value: await page.textContent(c.selector, { timeout }) };
  },
  async screenshot(c, timeout) {
    await page.screenshot({ path: c.path, fullPage: Boolean(c.full_page), timeout });
    return { path: c.path };
  },
  async url() {
    return { url: page.url() };
  },
  async viewport(c) {
    await page.setViewportSize({ width: Number(c.width), height: Number(c.height) });
    return {};
  },
};

async function close() {
  await withTimeout(browser.close(), 10000, 'closing the browser').catch(() => {});
  process.exit(0);
}

send({ ok: true, ready: true, version: browser.version() });

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    send({ ok: false, error: `not a JSON command: ${e.message}` });
    continue;
  }
  if (c.cmd === 'close') {
    send({ ok: true });
    await close();
  }
  const run = commands[c.cmd];
  if (!run) {
    send({ ok: false, error: `unknown command ${JSON.stringify(c.cmd)}` });
    continue;
  }
  const timeout = Number.isFinite(c.timeout_ms) ? c.timeout_ms : DEFAULT_TIMEOUT_MS;
  const seen = pageLog.length;
  try {
    // Playwright's own bound (`timeout`) usually answers first, with its own message.
    const answer = await withTimeout(run(c, timeout), timeout + 1000, c.cmd, timeout);
    send({ ok: true, ...answer });
  } catch (e) {
    send({ ok: false, error: e.message, page_log: pageLog.slice(Math.max(0, seen - 5)) });
  }
}
await close();
