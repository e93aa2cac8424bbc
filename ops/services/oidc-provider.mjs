// OIDC provider for Stowage's tests: panva's oidc-provider issuing RS256 JWT access tokens
// through the client_credentials grant. Each client in oidc-users.json is a test user; its
// `groups` become the groups claim (absent when the user has none).
//
// Usage: node oidc-provider.mjs --port 19004 [--users oidc-users.json]
// Test-only admin route (loopback): POST /test-admin/rotate-keys signs with a new key from then
// on and keeps the old one in the JWKS, as a provider rotating its keys does.

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
    })),
    jwks: { keys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
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
      const user = usersById.get(token.clientId);
      if (!user?.groups) return undefined;
      return { [config.groups_claim ?? 'groups']: user.groups };
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
  provider.callback()(req, res);
});

server.listen(Number(args.port), args.host, () => {
  console.log(`oidc provider ${issuer} (audience ${config.audience}, ${config.users.length} users)`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
