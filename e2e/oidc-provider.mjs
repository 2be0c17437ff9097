// An OpenID provider we did not write, for the sign-in tests: npm's oauth2-mock-server, started
// on 127.0.0.1:PORT (its issuer exactly `http://127.0.0.1:PORT`, as the app is told). It signs
// in without a page: `/authorize?…&login_hint=NAME` (or with a cookie `person=NAME`, as a
// browser test sets) redirects at once with a code, and the ID token then names NAME, with the claims PEOPLE (JSON: {"NAME": {"email": …, "groups": […]}})
// gives. It checks PKCE (S256) and answers `/endsession` (RP-initiated logout).
import { OAuth2Server } from "oauth2-mock-server";

const port = Number(process.env.PORT ?? 18096);
const people = JSON.parse(process.env.PEOPLE ?? "{}");
const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
server.issuer.url = `http://127.0.0.1:${port}`;
const personOfCode = new Map();
server.service.on("beforeAuthorizeRedirect", (authorize, req) => {
  const cookie = /(?:^|;\s*)person=([a-z]+)/.exec(req.headers.cookie ?? "")?.[1];
  const name = new URL(req.url, "http://x").searchParams.get("login_hint") ?? cookie ?? "alice";
  const code = authorize.url.searchParams.get("code");
  if (code) personOfCode.set(code, name);
});
server.service.on("beforeTokenSigning", (token, req) => {
  const name = personOfCode.get(req.body?.code);
  if (!name) return;
  token.payload.sub = `id-${name}`;
  Object.assign(token.payload, { email: `${name}@example.org`, name }, people[name] ?? {});
});
await server.start(port, "127.0.0.1");
console.log(`listening ${server.issuer.url}`);
