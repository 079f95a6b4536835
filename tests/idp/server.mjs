// A real OpenID Provider for Warden's end-to-end tests, built on the certified
// `oidc-provider`. Agents obtain JWT access tokens with the client_credentials grant.
//
// Environment:
//   IDP_PORT      port to listen on (127.0.0.1); 0 or unset picks a free one
//   IDP_AUDIENCE  `aud` of tokens for the default resource (default: warden)
//   IDP_CLIENTS   JSON array of clients, replacing the built-in ones:
//                 [{ "client_id", "client_secret", "claims": { fleet, owner, environment, groups } }]
//   IDP_CONSOLE_REDIRECTS  comma-separated redirect URIs of the public client `warden-console`
//                 (authorization code flow with PKCE, for the approval console's sign-in);
//                 without it there is no such client
//   IDP_CONSOLE_ACCESS_TOKEN_TTL  lifetime in seconds of the access tokens `warden-console`
//                 gets (default 3600); short, for the console's refresh tests
//   IDP_CONSOLE_ID_TOKEN_TTL  lifetime in seconds of the ID tokens `warden-console` gets, at
//                 sign-in and at each refresh (default 3600); short, for the tests of console
//                 sessions that follow the ID token
//   IDP_USERS     JSON object of people who sign in, replacing the built-in ones:
//                 { "alice": { "password", "name", "email", "groups": [...] }, ... }
//                 built in: alice and bob (groups sre), carol (finance), dave (sre, ops);
//                 each one's password is "<login>-password"
//
// On start it prints one line on stdout, then serves until SIGTERM/SIGINT:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT","token_endpoint":"…","jwks_uri":"…","kid":"…"}
//
// Resources (the `resource` token parameter), each giving the token's `aud` and lifetime:
//   urn:warden            aud = IDP_AUDIENCE, 1 hour   (the default when none is asked)
//   urn:warden:short      aud = IDP_AUDIENCE, 1 second (for expiry tests)
//   urn:other             aud = other-api,    1 hour   (for wrong-audience tests)
//
// People sign in on this server's own login page (`/interaction/<uid>`: login and password
// checked against IDP_USERS); the console's client is granted its scopes without a consent page.
// Their userinfo carries sub (the login), name, preferred_username, email (verified), groups;
// the console's access token is for the userinfo endpoint (no resource indicator), which the
// console asks at sign-in and again at each vote. Its code flow also gets a refresh token, as
// Keycloak's and most providers' do without `offline_access` (oidc-provider's default policy
// issues one only for `offline_access`): bound to the person's session here (it ends with it),
// rotated at each use (a new one each time; a spent one used again revokes the whole grant),
// and refused (invalid_grant) once the account is disabled.
//
// Admin endpoints (test control, not part of OIDC):
//   POST /admin/rotate                 new RSA key, published in the JWKS and used from now on
//   POST /admin/rotate?publish=false   new RSA key used from now on but NOT in the JWKS
//   POST /admin/publish                publish every key generated so far
//   GET  /admin/public-key             PEM (SPKI) of the current signing key
//   POST /admin/kubernetes-token?namespace=NS&serviceaccount=SA&pod=POD&audience=AUD
//        a token shaped like a Kubernetes projected service-account token (as the cluster's
//        OIDC issuer signs them: header {alg, kid}; iss, sub "system:serviceaccount:NS:SA",
//        aud [AUD] (default IDP_AUDIENCE), iat, nbf, exp (1 hour), jti and the "kubernetes.io"
//        claim with namespace, pod, serviceaccount and node), signed with the current key;
//        iss is this server's issuer, where a cluster's would be https://kubernetes.default.svc…
//   POST /admin/person-token?login=L&audience=AUD
//        the JWT access token a signed-in person L of IDP_USERS gets for resource audience AUD
//        (as this provider mints them: header {alg, typ at+jwt, kid}; iss, sub L, aud AUD,
//        iat, exp (1 hour), jti, client_id warden-cli, scope, and the person's groups, email
//        and preferred_username), signed with the current key: an operator's token for an API
//        without scripting a browser sign-in; 404 for an unknown login
//   POST /admin/forge?mode=M&client=ID an attack token with the claims a real token for ID has:
//        M = none (alg "none", empty signature) | hs256-public-key (HS256, HMAC key = the
//        public key's PEM) | unpublished-key (RS256 with a key never published, fresh kid)
//   POST /admin/person?login=L&groups=G1,G2&disabled=true|false
//        changes person L of IDP_USERS from now on: `groups` (when given; empty for none)
//        replaces their groups, `disabled=true` disables the account (it cannot sign in, and
//        the userinfo endpoint refuses its access tokens with 401 invalid_token, as for an
//        account that no longer exists), `disabled=false` enables it again; answers the
//        person's {login, groups, disabled}; 404 for an unknown login
//   POST /admin/userinfo?fail=true|false
//        while failing, the userinfo endpoint (/me) answers 503 (an identity provider that
//        cannot answer); everything else works
//   POST /admin/token?fail=true|false
//        while failing, the token endpoint (/token) answers 503 with
//        {"error": "temporarily_unavailable"}; everything else works
//   POST /admin/revoke-access-tokens?login=L
//        revokes every access token the console's client `warden-console` holds for person L
//        (as an administrator's "revoke sessions' tokens" or RFC 7009 revocation does): the
//        userinfo endpoint refuses them from now on with 401 invalid_token, while the
//        refresh tokens of L's sign-ins still renew them; answers {"revoked": N}
//   GET  /admin/refreshes
//        {"refreshes": N}: how many refresh_token grants the token endpoint has answered with
//        new tokens
// The admin endpoints are served on the loopback address only, as everything here is.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const host = '127.0.0.1';
const audience = process.env.IDP_AUDIENCE || 'warden';

const defaultClients = [
  {
    client_id: 'agent-alpha',
    client_secret: 'alpha-secret-for-tests-only',
    claims: { fleet: 'research', owner: 'alice', environment: 'dev', groups: ['researchers'] },
  },
  {
    client_id: 'agent-beta',
    client_secret: 'beta-secret-for-tests-only',
    claims: { fleet: 'payments', owner: 'bob', environment: 'prod', groups: ['payments', 'pci'] },
  },
];

const clients = process.env.IDP_CLIENTS ? JSON.parse(process.env.IDP_CLIENTS) : defaultClients;

function person(login, name, groups) {
  return { password: `${login}-password`, name, email: `${login}@example.com`, groups };
}
const defaultUsers = {
  alice: person('alice', 'Alice Approver', ['sre']),
  bob: person('bob', 'Bob Builder', ['sre']),
  carol: person('carol', 'Carol Counts', ['finance']),
  dave: person('dave', 'Dave Ops', ['sre', 'ops']),
};
const users = process.env.IDP_USERS ? JSON.parse(process.env.IDP_USERS) : defaultUsers;
const consoleRedirects = (process.env.IDP_CONSOLE_REDIRECTS || '')
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
const CONSOLE_CLIENT = 'warden-console';
const CONSOLE_SCOPES = 'openid profile email groups';
const USERINFO_PATH = '/me';
// Whether the userinfo endpoint answers 503 (POST /admin/userinfo?fail=true).
let userinfoFails = false;
// Whether the token endpoint answers 503 (POST /admin/token?fail=true).
let tokenFails = false;
// How many refresh_token grants were answered with new tokens.
let refreshes = 0;
const consoleAccessTokenTTL = Number(process.env.IDP_CONSOLE_ACCESS_TOKEN_TTL || 3600);
const consoleIdTokenTTL = Number(process.env.IDP_CONSOLE_ID_TOKEN_TTL || 3600);
// The console's live access tokens by person (the models, so they can be revoked).
const consoleAccessTokens = new Map();
const claimsByClient = new Map(clients.map((c) => [c.client_id, c.claims || {}]));

const resources = {
  'urn:warden': { audience, accessTokenTTL: 3600 },
  'urn:warden:short': { audience, accessTokenTTL: 1 },
  'urn:other': { audience: 'other-api', accessTokenTTL: 3600 },
};

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = crypto.randomBytes(9).toString('base64url');
  return { jwk: { ...jwk, kid, alg: 'RS256', use: 'sig' }, privateKey };
}

// Every key ever generated, newest first; `published` says which are in the JWKS.
const keys = [];
let current;

function buildProvider(issuer) {
  const published = keys.filter((k) => k.published);
  // The signing key must be in the keystore; an unpublished current key is added to the
  // keystore only for signing and filtered out of the JWKS response below.
  const keystore = [current, ...published.filter((k) => k !== current)].map((k) => k.jwk);
  const provider = new Provider(issuer, {
    clients: [
      ...clients.map(({ client_id, client_secret }) => ({
        client_id,
        client_secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      ...(consoleRedirects.length
        ? [{
          client_id: CONSOLE_CLIENT,
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          redirect_uris: consoleRedirects,
          token_endpoint_auth_method: 'none',
        }]
        : []),
    ],
    routes: { userinfo: USERINFO_PATH },
    findAccount: (_ctx, id) => {
      const user = users[id];
      // A disabled account is as good as gone: its tokens no longer name anyone.
      if (!user || user.disabled) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          name: user.name,
          preferred_username: id,
          email: user.email,
          email_verified: true,
          groups: user.groups || [],
        }),
      };
    },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // The console is this company's own application: it needs no consent page.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (ctx.oidc.client.clientId !== CONSOLE_CLIENT) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: CONSOLE_CLIENT,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(CONSOLE_SCOPES);
      await grant.save();
      return grant;
    },
    jwks: { keys: keystore },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'llm', 'profile', 'email', 'groups'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The console's access tokens are for this provider's own userinfo endpoint (no
        // resource, as an SSO sign-in's are), which Warden asks again at each vote.
        defaultResource: (_ctx, client) => (client?.clientId === CONSOLE_CLIENT ? undefined : 'urn:warden'),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          const r = resources[resourceIndicator];
          if (!r) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          return {
            scope: 'llm',
            audience: r.audience,
            accessTokenTTL: r.accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256', kid: current.jwk.kid } },
          };
        },
      },
    },
    extraTokenClaims: (_ctx, token) => claimsByClient.get(token.clientId),
    // A refresh token with the console's code flow, as Keycloak gives one (bound to the
    // person's session at this provider unless offline_access was granted).
    issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token')
      && (client.clientId === CONSOLE_CLIENT || code.scopes.has('offline_access')),
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 600,
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL
        || (token.clientId === CONSOLE_CLIENT ? consoleAccessTokenTTL : 3600),
      IdToken: (_ctx, _token, client) => (client?.clientId === CONSOLE_CLIENT ? consoleIdTokenTTL : 3600),
    },
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  });
  provider.on('server_error', (ctx, err) => console.error('idp server_error', err));
  provider.on('access_token.saved', (token) => {
    if (token.clientId !== CONSOLE_CLIENT || !token.accountId) return;
    const held = consoleAccessTokens.get(token.accountId) || [];
    held.push(token);
    consoleAccessTokens.set(token.accountId, held);
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params.grant_type === 'refresh_token') refreshes += 1;
  });
  return provider;
}

const { errors } = Provider;

let handler;
let issuer;
let provider;

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function loginPage(res, uid, message) {
  res.writeHead(message ? 401 : 200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Example Corp sign-in</title></head>
<body><h1>Example Corp sign-in</h1>${message ? `<p id="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Login <input id="login" name="login" autocomplete="username" required></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button id="sign-in" type="submit">Sign in</button></form></body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

// The login page of a sign-in in progress, and its form.
async function interaction(req, res, url) {
  const [, , uid, step] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET' && !step) {
    if (details.prompt.name === 'login') return loginPage(res, uid);
    // A consent prompt: grant what the client asked (only the console reaches here).
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(CONSOLE_SCOPES);
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (req.method === 'POST' && step === 'login') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    const user = users[login];
    if (!user || user.password !== form.get('password')) {
      return loginPage(res, uid, 'Wrong login or password.');
    }
    if (user.disabled) return loginPage(res, uid, 'This account is disabled.');
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  res.writeHead(404);
  return res.end();
}

function rebuild() {
  provider = buildProvider(issuer);
  const callback = provider.callback();
  const jwksPath = '/jwks';
  handler = (req, res) => {
    // The JWKS lists only published keys, so an unpublished current key has an unknown kid.
    if (req.method === 'GET' && req.url === jwksPath) {
      const body = JSON.stringify({
        keys: keys.filter((k) => k.published).map((k) => publicJwk(k.jwk)),
      });
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
      res.end(body);
      return;
    }
    callback(req, res);
  };
}

function publicJwk({ kty, n, e, kid, alg, use }) {
  return { kty, n, e, kid, alg, use };
}

function rotate(publish) {
  const key = { ...newSigningKey(), published: publish };
  keys.unshift(key);
  current = key;
  rebuild();
  return key;
}

async function realClaims(clientId, resource = 'urn:warden') {
  const r = resources[resource];
  const now = Math.floor(Date.now() / 1000);
  return {
    ...(claimsByClient.get(clientId) || {}),
    jti: crypto.randomBytes(16).toString('base64url'),
    sub: clientId,
    client_id: clientId,
    scope: 'llm',
    iat: now,
    exp: now + r.accessTokenTTL,
    iss: issuer,
    aud: r.audience,
  };
}

function b64json(v) {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

async function forge(mode, clientId) {
  const payload = await realClaims(clientId);
  if (mode === 'none') {
    return `${b64json({ alg: 'none', typ: 'at+jwt', kid: current.jwk.kid })}.${b64json(payload)}.`;
  }
  if (mode === 'hs256-public-key') {
    const pem = crypto.createPublicKey(current.privateKey).export({ format: 'pem', type: 'spki' });
    const secret = new TextEncoder().encode(pem);
    return new jose.SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: current.jwk.kid })
      .sign(secret);
  }
  if (mode === 'unpublished-key') {
    const { jwk, privateKey } = newSigningKey();
    return new jose.SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwk.kid })
      .sign(privateKey);
  }
  throw new Error(`unknown forge mode ${mode}`);
}

// The access token person `login` gets for `aud` after signing in (claims as findAccount's).
async function personToken(login, aud) {
  const user = users[login];
  if (!user) return undefined;
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: issuer,
    sub: login,
    aud: aud || audience,
    iat: now,
    exp: now + 3600,
    jti: crypto.randomBytes(16).toString('base64url'),
    client_id: 'warden-cli',
    scope: 'openid profile email groups',
    groups: user.groups || [],
    email: user.email,
    preferred_username: login,
  };
  return new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: current.jwk.kid })
    .sign(current.privateKey);
}

// A Kubernetes projected service-account token for `serviceaccount` in `namespace`, mounted
// in `pod` (kube-apiserver's shape, pkg/serviceaccount/claims.go).
async function kubernetesToken({ namespace, serviceaccount, pod, aud }) {
  const now = Math.floor(Date.now() / 1000);
  const uid = () => crypto.randomUUID();
  const payload = {
    aud: [aud || audience],
    exp: now + 3600,
    iat: now,
    iss: issuer,
    jti: uid(),
    'kubernetes.io': {
      namespace,
      node: { name: 'node-1', uid: uid() },
      pod: { name: pod, uid: uid() },
      serviceaccount: { name: serviceaccount, uid: uid() },
      warnafter: now + 3000,
    },
    nbf: now,
    sub: `system:serviceaccount:${namespace}:${serviceaccount}`,
  };
  return new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: current.jwk.kid })
    .sign(current.privateKey);
}

function reply(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function admin(req, res, url) {
  if (req.method === 'POST' && url.pathname === '/admin/rotate') {
    const key = rotate(url.searchParams.get('publish') !== 'false');
    return reply(res, 200, { kid: key.jwk.kid, published: key.published });
  }
  if (req.method === 'POST' && url.pathname === '/admin/publish') {
    for (const k of keys) k.published = true;
    rebuild();
    return reply(res, 200, { kids: keys.map((k) => k.jwk.kid) });
  }
  if (req.method === 'GET' && url.pathname === '/admin/public-key') {
    const pem = crypto.createPublicKey(current.privateKey).export({ format: 'pem', type: 'spki' });
    res.writeHead(200, { 'content-type': 'application/x-pem-file' });
    return res.end(pem);
  }
  if (req.method === 'POST' && url.pathname === '/admin/kubernetes-token') {
    const q = url.searchParams;
    const namespace = q.get('namespace') || 'default';
    const serviceaccount = q.get('serviceaccount') || 'default';
    const pod = q.get('pod') || `${serviceaccount}-0`;
    return reply(res, 200, {
      token: await kubernetesToken({ namespace, serviceaccount, pod, aud: q.get('audience') }),
    });
  }
  if (req.method === 'POST' && url.pathname === '/admin/person-token') {
    const q = url.searchParams;
    const token = await personToken(q.get('login') || '', q.get('audience'));
    if (!token) return reply(res, 404, { error: `no person ${q.get('login')} in IDP_USERS` });
    return reply(res, 200, { token });
  }
  if (req.method === 'POST' && url.pathname === '/admin/person') {
    const q = url.searchParams;
    const login = q.get('login') || '';
    const user = users[login];
    if (!user) return reply(res, 404, { error: `no person ${login} in IDP_USERS` });
    if (q.has('groups')) user.groups = q.get('groups').split(',').map((g) => g.trim()).filter(Boolean);
    if (q.has('disabled')) user.disabled = q.get('disabled') === 'true';
    return reply(res, 200, { login, groups: user.groups || [], disabled: Boolean(user.disabled) });
  }
  if (req.method === 'POST' && url.pathname === '/admin/userinfo') {
    userinfoFails = url.searchParams.get('fail') === 'true';
    return reply(res, 200, { fail: userinfoFails });
  }
  if (req.method === 'POST' && url.pathname === '/admin/token') {
    tokenFails = url.searchParams.get('fail') === 'true';
    return reply(res, 200, { fail: tokenFails });
  }
  if (req.method === 'POST' && url.pathname === '/admin/revoke-access-tokens') {
    const login = url.searchParams.get('login') || '';
    if (!users[login]) return reply(res, 404, { error: `no person ${login} in IDP_USERS` });
    const held = consoleAccessTokens.get(login) || [];
    consoleAccessTokens.delete(login);
    await Promise.all(held.map((token) => token.destroy()));
    return reply(res, 200, { revoked: held.length });
  }
  if (req.method === 'GET' && url.pathname === '/admin/refreshes') {
    return reply(res, 200, { refreshes });
  }
  if (req.method === 'POST' && url.pathname === '/admin/forge') {
    const mode = url.searchParams.get('mode') || '';
    const clientId = url.searchParams.get('client') || clients[0].client_id;
    try {
      return reply(res, 200, { token: await forge(mode, clientId) });
    } catch (err) {
      return reply(res, 400, { error: String(err.message || err) });
    }
  }
  return reply(res, 404, { error: `no admin endpoint ${req.method} ${url.pathname}` });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/admin/')) {
    admin(req, res, url).catch((err) => reply(res, 500, { error: String(err) }));
    return;
  }
  if (userinfoFails && url.pathname === USERINFO_PATH) {
    reply(res, 503, { error: 'temporarily_unavailable', error_description: 'userinfo is down (test)' });
    return;
  }
  if (tokenFails && url.pathname === '/token') {
    reply(res, 503, { error: 'temporarily_unavailable', error_description: 'the token endpoint is down (test)' });
    return;
  }
  if (url.pathname.startsWith('/interaction/')) {
    interaction(req, res, url).catch((err) => {
      console.error('idp interaction error', err);
      if (!res.headersSent) reply(res, 400, { error: String(err.message || err) });
    });
    return;
  }
  handler(req, res);
});

server.listen(Number(process.env.IDP_PORT || 0), host, () => {
  const { port } = server.address();
  issuer = `http://${host}:${port}`;
  rotate(true);
  process.stdout.write(`${JSON.stringify({
    ready: true,
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    kid: current.jwk.kid,
  })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
