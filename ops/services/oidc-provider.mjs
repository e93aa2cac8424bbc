// OIDC provider for Stowage's tests: panva's oidc-provider issuing RS256 JWT access tokens
// through the client_credentials grant (each client in oidc-users.json is a test user, as a
// service account is) and the device authorization grant (the public client `stowage-cli`, used
// by `stowage login --device`, named `device_client_id` in oidc-users.json; the users are its
// accounts, and it gets refresh tokens). A user's `groups` become the groups
// claim (absent when the user has none); a user's `not_before_seconds` puts an `nbf` that far in
// the future into its tokens.
//
// Usage: node oidc-provider.mjs --port 19004 [--users oidc-users.json]
// Test-only admin routes (loopback):
// - POST /test-admin/rotate-keys signs with a new key from then on and keeps the old one in the
//   JWKS, as a provider rotating its keys does.
// - POST /test-admin/approve-device {"user_code": "...", "account": "alice"} does what a person
//   does in a browser on the verification page: signs in as the account and approves the code.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import Provider, { errors } from 'oidc-provider';


const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.STOWAGE_TEST_OIDC_PORT ?? '19004' },
    host: { type: 'string', default: '127.0.0.1' },
    users: { type: 'string', default: new URL('./oidc-users.json', import.meta.url).pathname },
  },
});

const config = JSON.parse(readFileSync(args.users, 'utf8'));
const issuer = `http://${args.host}:${args.port}`;
const audiences = new Set([config.audience, ...(config.other_audiences ?? [])]);
const usersById = new Map(config.users.map((user) => [user.client_id, user]));

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function buildProvider(keys) {
  const provider = new Provider(issuer, {
    clients: config.users.map((user) => ({
      client_id: user.client_id,
      client_secret: user.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })).concat([{
      client_id: config.device_client_id,
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      redirect_uris: [],
      response_types: [],
    }]),
    jwks: { keys },
    async findAccount(ctx, id) {
      if (!usersById.has(id)) return undefined;
      return { accountId: id, claims: () => ({ sub: id }) };
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.audience,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource, client) {
          if (!audiences.has(resource)) throw new errors.InvalidTarget();
          const user = usersById.get(client.clientId);
          return {
            scope: 'stowage',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: user?.token_ttl_seconds ?? 600,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(ctx, token) {
      const user = usersById.get(token.accountId ?? token.clientId);
      const claims = {};
      if (user?.groups) claims[config.groups_claim ?? 'groups'] = user.groups;
      // A token that is not valid yet, for not-before tests.
      if (user?.not_before_seconds) {
        claims.nbf = Math.floor(Date.now() / 1000) + user.not_before_seconds;
      }
      return Object.keys(claims).length ? claims : undefined;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider error:', err));
  return provider;
}

let keys = [newSigningKey()];
let provider = buildProvider(keys);

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test-admin/rotate-keys') {
    keys = [newSigningKey(), ...keys].slice(0, 2);
    provider = buildProvider(keys);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ signing_kid: keys[0].kid, kids: keys.map((key) => key.kid) }));
    return;
  }
  if (req.method === 'POST' && req.url === '/test-admin/approve-device') {
    approveDevice(req, res);
    return;
  }
  provider.callback()(req, res);
});

/** Signs `account` in for a pending device code and approves it, as the verification page does. */
async function approveDevice(req, res) {
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    let text = '';
    for await (const chunk of req) text += chunk;
    const { user_code: userCode, account } = JSON.parse(text);
    if (!usersById.has(account)) return answer(404, { error: `no account ${account}` });
    const normalized = String(userCode ?? '').toUpperCase().replace(/\W/g, '');
    const code = await provider.DeviceCode.findByUserCode(normalized);
    if (!code) return answer(404, { error: `no pending device code ${userCode}` });
    const grant = new provider.Grant({ accountId: account, clientId: code.clientId });
    grant.addOIDCScope('openid offline_access');
    grant.addResourceScope(config.audience, 'stowage');
    const grantId = await grant.save();
    Object.assign(code, {
      accountId: account,
      grantId,
      authTime: Math.floor(Date.now() / 1000),
      scope: 'openid offline_access',
      resource: config.audience,
    });
    await code.save();
    return answer(200, { approved: userCode, account });
  } catch (err) {
    return answer(500, { error: String(err) });
  }
}

server.listen(Number(args.port), args.host, () => {
  console.log(`oidc provider ${issuer} (audience ${config.audience}, ${config.users.length} users)`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
