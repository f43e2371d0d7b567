// A local OAuth2/OIDC provider for minicrm's auth tests, on top of oauth2-mock-server.
//
// usage: node mock.mjs PORT
// Prints "ready <issuer-url>" once listening. Endpoints: /authorize, /token, /userinfo.
//
// oauth2-mock-server auto-approves every authorization and always answers sub "johndoe"; the
// tests need several people, so the identity is chosen by the `login_hint` query parameter of
// the authorize request (an email; default johndoe@example.com) and carried through the code:
//   authorize(login_hint) -> code  ->  token(code) carries sub/email  ->  userinfo(token).
// Stricter than the stock mock, like Google: a code works once, and a code issued with a PKCE
// challenge must be redeemed with a code_verifier (the stock mock checks the verifier only
// when one is sent). login_hint "userinfo-fails@example.com" makes /userinfo answer 500; a
// login_hint starting with "unverified" gets email_verified: false.
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.argv[2] || 0);
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

const codes = new Map(); // code -> { email, pkce }

server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (!code) return;
  const hint = typeof req.query.login_hint === 'string' ? req.query.login_hint : '';
  codes.set(code, { email: hint || 'johndoe@example.com', pkce: Boolean(req.query.code_challenge) });
});

server.service.on('beforeTokenSigning', (token, req) => {
  const entry = codes.get(req.body && req.body.code);
  if (entry) {
    token.payload.sub = 'sub-' + entry.email;
    token.payload.email = entry.email;
  }
});

server.service.on('beforeResponse', (response, req) => {
  if (!req.body || req.body.grant_type !== 'authorization_code') return;
  const entry = codes.get(req.body.code);
  codes.delete(req.body.code);
  if (!entry) {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant', error_description: 'unknown or used code' };
  } else if (entry.pkce && !req.body.code_verifier) {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant', error_description: 'code_verifier required' };
  }
});

server.service.on('beforeUserinfo', (response, req) => {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || '');
  let claims = null;
  try {
    claims = m && JSON.parse(Buffer.from(m[1].split('.')[1], 'base64url').toString());
  } catch (e) {
    claims = null;
  }
  if (!claims || !claims.email) {
    response.statusCode = 401;
    response.body = { error: 'invalid_token' };
    return;
  }
  if (claims.email === 'userinfo-fails@example.com') {
    response.statusCode = 500;
    response.body = { error: 'server_error' };
    return;
  }
  const local = claims.email.split('@')[0];
  response.body = {
    sub: claims.sub,
    email: claims.email,
    email_verified: !local.startsWith('unverified'),
    name: 'User ' + local,
  };
});

await server.start(port, '127.0.0.1');
console.log('ready ' + server.issuer.url);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
