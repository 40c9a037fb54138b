// The OAuth 2.0 / OpenID provider sidekey's connect tests run against: the real
// `oidc-provider` package (a certified implementation), on a free loopback port.
//
//   node provider.mjs            (configuration from the environment)
//   PROVIDER_CLIENTS  JSON list of clients: {client_id, client_secret, redirect_uris,
//                     token_endpoint_auth_method?}; every client may use
//                     authorization_code + refresh_token, and PKCE (S256) is required.
//   PROVIDER_ACCESS_TTL  access token lifetime in seconds (default 3600).
//
// Logins use the package's own development interactions (any login name is accepted
// and becomes the account id, i.e. the ID token's `sub`), then a consent form.
// stdout: one JSON line {"issuer": ...} once listening, then one line per token request
// ({"event": "grant.success" | "grant.error", "grant_type", "code", "code_verifier",
// "refresh_token"}): the secrets it *received*, so tests can check that sidekey never
// shows them anywhere else.
import http from 'node:http';
import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.PROVIDER_CLIENTS || '[]').map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));
const accessTtl = Number(process.env.PROVIDER_ACCESS_TTL || 3600);

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    scopes: ['openid', 'offline_access', 'read_content', 'write_content'],
    pkce: { required: () => true },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: accessTtl, AuthorizationCode: 120, Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 86400, IdToken: 3600 },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['sidekey-test-provider-cookie-key'] },
  });
  const log = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const received = (ctx) => {
    const p = ctx.oidc.params || {};
    return { grant_type: p.grant_type, client_id: ctx.oidc.client?.clientId, code: p.code, code_verifier: p.code_verifier, refresh_token: p.refresh_token };
  };
  provider.on('grant.success', (ctx) => log({ event: 'grant.success', ...received(ctx) }));
  provider.on('grant.error', (ctx, err) => log({ event: 'grant.error', error: err.error, ...received(ctx) }));
  provider.on('server_error', (_ctx, err) => log({ event: 'server_error', message: String(err && err.message) }));
  server.on('request', provider.callback());
  log({ issuer });
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
