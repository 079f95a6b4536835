// Warden approval console: the passkey ceremonies (WebAuthn). Everything else works
// without script. Served from /assets (the CSP allows no inline script).
'use strict';

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf() },
    body: JSON.stringify(body),
  });
  let answer = {};
  try {
    answer = await response.json();
  } catch (_) {
    answer = { message: `the console answered ${response.status}` };
  }
  if (!response.ok) throw new Error(answer.message || `the console answered ${response.status}`);
  return answer;
}

function say(container, text, failed) {
  const status = container.querySelector('.passkey-status');
  if (!status) return;
  status.textContent = text;
  status.classList.toggle('error', Boolean(failed));
}

function buttons(container, disabled) {
  container.querySelectorAll('button').forEach((b) => { b.disabled = disabled; });
}

function webauthnMissing() {
  return !window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON;
}

async function decideWithPasskey(container, decision) {
  const approval = container.dataset.approval;
  buttons(container, true);
  try {
    if (webauthnMissing()) throw new Error('this browser cannot use passkeys here; use a code from your app');
    say(container, 'Confirm with your passkey…');
    const started = await post(`/approvals/${encodeURIComponent(approval)}/passkey/start`, { decision });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(started.options.publicKey),
    });
    const done = await post(`/approvals/${encodeURIComponent(approval)}/passkey/finish`, {
      ceremony: started.ceremony, decision, credential: credential.toJSON(),
    });
    say(container, 'Recorded.');
    window.location.assign(done.redirect);
  } catch (e) {
    say(container, `Not recorded: ${e.message}`, true);
    buttons(container, false);
  }
}

async function registerPasskey(container) {
  buttons(container, true);
  try {
    if (webauthnMissing()) throw new Error('this browser cannot create passkeys');
    say(container, 'Follow your browser to create the passkey…');
    const started = await post('/factors/passkeys/start', {});
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(started.options.publicKey),
    });
    const done = await post('/factors/passkeys/finish', {
      ceremony: started.ceremony, credential: credential.toJSON(),
    });
    window.location.assign(done.redirect);
  } catch (e) {
    say(container, `Not added: ${e.message}`, true);
    buttons(container, false);
  }
}

async function verifyWithPasskey(container) {
  buttons(container, true);
  try {
    if (webauthnMissing()) throw new Error('this browser cannot use passkeys here; use a code from your app');
    say(container, 'Confirm with your passkey…');
    const started = await post('/factors/verify/passkey/start', {});
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(started.options.publicKey),
    });
    const done = await post('/factors/verify/passkey/finish', {
      ceremony: started.ceremony, credential: credential.toJSON(),
    });
    window.location.assign(done.redirect);
  } catch (e) {
    say(container, `Not confirmed: ${e.message}`, true);
    buttons(container, false);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('.passkey[data-approval]').forEach((container) => {
    container.querySelectorAll('button[data-passkey-decision]').forEach((button) => {
      button.addEventListener('click', () => decideWithPasskey(container, button.dataset.passkeyDecision));
    });
  });
  document.querySelectorAll('.passkey-register').forEach((container) => {
    const button = container.querySelector('button[data-passkey-register]');
    if (button) button.addEventListener('click', () => registerPasskey(container));
  });
  document.querySelectorAll('.passkey-verify').forEach((container) => {
    const button = container.querySelector('button[data-passkey-verify]');
    if (button) button.addEventListener('click', () => verifyWithPasskey(container));
  });
});
