// The benchmark's peer: node-oidc-provider configured like the Auth Service's token
// endpoint (client_credentials, client_secret_basic, RS256 JWT access tokens, same
// TTL, in-memory adapter, one process). Configuration arrives as JSON in PEER_CONFIG.
import Provider from "oidc-provider";

const config = JSON.parse(process.env.PEER_CONFIG);
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: "client_secret_basic",
  })),
  jwks: { keys: [config.jwk] },
  scopes: ["registry.read"],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:ocen:registry",
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "registry.read",
        audience: "urn:ocen:registry",
        accessTokenTTL: config.ttl,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  ttl: { ClientCredentials: config.ttl },
});

provider.listen(config.port, "127.0.0.1", () => {
  console.log(`peer listening on ${issuer}`);
});
