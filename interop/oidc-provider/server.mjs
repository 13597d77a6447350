// Starts panva's oidc-provider (a certified OpenID provider) on 127.0.0.1 with an
// ephemeral port, for smart-auth's interop test (tests/interop.rs).
//
// Input: the environment variable INTEROP_CONFIG, a JSON object
//   { "resource": "<FHIR base URL>", "resource_scopes": "<space-separated scopes>",
//     "clients": [ { "client_id", "scope", and either "jwks" (private_key_jwt)
//                    or "client_secret" (client_secret_basic) } ] }
// Output: one JSON line on stdout, {"issuer": "http://127.0.0.1:<port>"}, once it serves.
// It stops when its standard input closes or on SIGTERM.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(process.env.INTEROP_CONFIG ?? '{}');
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const clients = config.clients.map((client) => ({
  client_id: client.client_id,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: client.scope,
  ...(client.jwks
    ? { token_endpoint_auth_method: 'private_key_jwt', jwks: client.jwks }
    : { token_endpoint_auth_method: 'client_secret_basic', client_secret: client.client_secret }),
}));

const allScopes = new Set(config.resource_scopes.split(' '));
for (const client of config.clients) for (const scope of client.scope.split(' ')) allScopes.add(scope);

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  scopes: [...allScopes],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== config.resource) throw new errors.InvalidTarget();
        return {
          scope: config.resource_scopes,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS384', 'ES384', 'RS256', 'PS256', 'ES256'],
  },
});
provider.proxy = false;

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
