// A real OpenID provider (the certified `oidc-provider` package) for rtconfig's SSO tests.
//
//   OIDC_TEST_CONFIG='{"client":{...},"users":[...]}' node tests/oidc/provider.mjs
//
// Listens on 127.0.0.1 (port `port`, default 0 = any free port), then prints one line on stdout:
//
//   oidc-provider ready issuer=http://127.0.0.1:PORT
//
// and exits when its stdin closes (so it never outlives the test process that started it) or on
// SIGTERM/SIGINT. See README.md beside this file for the configuration, the login pages the tests
// drive over plain HTTP, and the `tamper` modes that mint bad ID tokens with the provider's own key.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const TAMPER_MODES = new Set(['expired', 'audience', 'nonce', 'issuer', 'signature', 'hs256', 'none']);

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function readConfig() {
  const text = process.env.OIDC_TEST_CONFIG;
  if (!text) fail('set OIDC_TEST_CONFIG to a JSON object (see tests/oidc/README.md)');
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    fail(`OIDC_TEST_CONFIG is not JSON: ${e.message}`);
  }
  const { client, users = [] } = config;
  if (!client?.client_id || !Array.isArray(client.redirect_uris)) {
    fail('OIDC_TEST_CONFIG.client needs client_id and redirect_uris');
  }
  for (const u of users) {
    if (!u.sub || !u.login || !u.password) fail('every user needs sub, login and password');
    if (u.tamper && !TAMPER_MODES.has(u.tamper)) {
      fail(`user ${u.login}: unknown tamper mode ${u.tamper} (one of ${[...TAMPER_MODES].join(', ')})`);
    }
  }
  return {
    port: Number(config.port ?? 0),
    client,
    users,
    // "userinfo" (default): scope claims (profile, email, groups) only from the userinfo endpoint,
    // as OIDC Core says for the code flow. "id_token": the userinfo endpoint is off, so the
    // provider puts them in the ID token instead.
    claimsIn: config.claims_in ?? 'userinfo',
  };
}

const config = readConfig();
const usersBySub = new Map(config.users.map((u) => [u.sub, u]));
const usersByLogin = new Map(config.users.map((u) => [u.login, u]));

// The provider's signing key, kept here so the tamper modes can sign with it too. A new key
// (and key id) at every start, so a restart looks like a key rotation to the relying party.
const KID = `key-${crypto.randomBytes(6).toString('hex')}`;
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: KID, alg: 'RS256', use: 'sig' };
// A different key under the same `kid`: a token signed with it must fail signature checks.
const { privateKey: strangerKey } = await jose.generateKeyPair('RS256');

function accountClaims(user) {
  const claims = { sub: user.sub };
  for (const name of ['preferred_username', 'email', 'email_verified', 'name', 'groups']) {
    if (user[name] !== undefined) claims[name] = user[name];
  }
  return claims;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Re-signs the ID token of a token response as the user's tamper mode says.
async function tamperIdToken(idToken, mode) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', kid: KID, typ: 'JWT' };
  let key = privateKey;
  switch (mode) {
    case 'expired':
      claims.iat = now - 7200;
      claims.exp = now - 3600;
      break;
    case 'audience':
      claims.aud = 'some-other-client';
      break;
    case 'nonce':
      claims.nonce = 'not-the-nonce-of-this-login';
      break;
    case 'issuer':
      claims.iss = 'https://issuer.invalid';
      break;
    case 'signature':
      key = strangerKey;
      break;
    case 'hs256':
      // Signed with the client secret (RFC 7518 HMAC): OIDC allows it, rtconfig must not.
      header.alg = 'HS256';
      delete header.kid;
      key = new TextEncoder().encode(config.client.client_secret ?? '');
      break;
    case 'none': {
      const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
    }
    default:
      throw new Error(`unknown tamper mode ${mode}`);
  }
  return new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
}

const server = http.createServer();
server.listen(config.port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
}).catch((e) => fail(`cannot listen on 127.0.0.1:${config.port}: ${e.message}`));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: config.client.client_secret ? 'client_secret_basic' : 'none',
    ...config.client,
  }],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: true,
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: config.claimsIn !== 'id_token' },
  },
  // PKCE for every client, confidential ones included: a relying party that forgets it fails.
  pkce: { methods: ['S256'], required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = usersBySub.get(sub);
    if (!user) return undefined;
    return { accountId: sub, claims: async () => accountClaims(user) };
  },
  // Keep the default error page offline (it loads a web font otherwise).
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('error', Object.entries(out)
      .map(([k, v]) => `<p><b>${escapeHtml(k)}</b>: ${escapeHtml(v)}</p>`).join(''));
  },
});

// The tamper modes: the token endpoint's own response, with its ID token replaced.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.status !== 200 || !ctx.body?.id_token) return;
  const { sub } = jose.decodeJwt(ctx.body.id_token);
  const mode = usersBySub.get(sub)?.tamper;
  if (mode) ctx.body = { ...ctx.body, id_token: await tamperIdToken(ctx.body.id_token, mode) };
});

const providerCallback = provider.callback();

// Our own interaction pages: GET /interaction/UID shows the login or consent form; the forms post
// to /interaction/UID/login and /interaction/UID/confirm.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('error', '<p>interaction mismatch</p>'));
  const { prompt, params, session } = details;

  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'login') {
      return send(res, 200, page('Sign in', `<form method="post" action="/interaction/${uid}/login">`
        + '<input type="hidden" name="prompt" value="login">'
        + '<input name="login"><input type="password" name="password">'
        + '<button type="submit">Sign in</button></form>'));
    }
    if (prompt.name === 'consent') {
      return send(res, 200, page('Authorize', `<form method="post" action="/interaction/${uid}/confirm">`
        + '<input type="hidden" name="prompt" value="consent">'
        + `<p>${escapeHtml(params.client_id)} asks for: ${escapeHtml(params.scope)}</p>`
        + '<button type="submit">Allow</button></form>'));
    }
    return send(res, 501, page('error', `<p>prompt ${escapeHtml(prompt.name)} not implemented</p>`));
  }

  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const user = usersByLogin.get(form.get('login') ?? '');
    if (!user || user.password !== form.get('password')) {
      return send(res, 401, page('Sign in', '<p>wrong login or password</p>'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, {
      mergeWithLastSubmission: false,
    });
  }

  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readForm(req);
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
  }

  return send(res, 400, page('error', `<p>unexpected ${escapeHtml(req.method)} for prompt ${escapeHtml(prompt.name)}</p>`));
}

server.on('request', (req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
  if (!match) return providerCallback(req, res);
  interaction(req, res, match[1], match[2]).catch((e) => {
    process.stderr.write(`provider.mjs: interaction failed: ${e.stack ?? e}\n`);
    if (!res.headersSent) send(res, 400, page('error', `<p>${escapeHtml(e.message)}</p>`));
  });
  return undefined;
});

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

process.stdout.write(`oidc-provider ready issuer=${issuer}\n`);
