//! What the configurations run against: one IdP for users and services, a
//! bank for the in-task flow, tokens minted now, and the Baton filter
//! configurations the rows use.

use std::time::Duration;

use mock_idp::{ClientRegistration, DEMO_BROKER_SECRET, MockIdp, MockIdpConfig};
use serde_json::{Value, json};

/// The API the users' tokens are for.
pub const AUDIENCE: &str = "orders-api";
/// The scope the claim rule requires.
pub const SCOPE: &str = "orders:read";
/// The gateway's OAuth client at the IdP.
pub const BROKER: &str = "agent-broker";
/// Where the bank sends the user back (served by in-task-auth-code).
pub const REDIRECT: &str = "https://gateway.bench/a2a/oauth/callback";
/// Distinct tokens in the pool workload.
pub const POOL_SIZE: usize = 1000;

/// Issued tokens outlive the whole run, so a cached configuration calls
/// the IdP once per distinct exchange, not once per expiry.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The IdPs and tokens of one bench run.
#[derive(Debug)]
pub struct World {
    /// Issues user tokens, exchanges them, serves client credentials.
    pub idp: MockIdp,
    /// The user's bank: the secondary IdP of the in-task flow.
    pub bank: MockIdp,
    /// One ES256 user token.
    pub es256_token: String,
    /// One RS256 user token.
    pub rs256_token: String,
    /// Distinct ES256 user tokens.
    pub pool: Vec<String>,
}

impl World {
    /// Starts both IdPs and mints the tokens.
    pub fn start() -> Result<World, String> {
        let idp = MockIdp::start(MockIdpConfig { access_token_ttl: TOKEN_TTL, ..MockIdpConfig::default() })
            .map_err(|e| format!("starting the IdP: {e}"))?;
        let bank = MockIdp::start(MockIdpConfig {
            access_token_ttl: TOKEN_TTL,
            clients: vec![ClientRegistration::bank_gateway("transfer-gateway", "bank-secret", REDIRECT)],
            ..MockIdpConfig::default()
        })
        .map_err(|e| format!("starting the bank: {e}"))?;
        let es256_token = idp.mint(user_claims(&idp, "alice"));
        let rs256_token = idp
            .mint_with("RS256", Value::Null, user_claims(&idp, "alice"))
            .map_err(|e| format!("minting RS256: {e}"))?;
        let pool = (0..POOL_SIZE).map(|i| idp.mint(user_claims(&idp, &format!("user-{i}")))).collect();
        Ok(World { idp, bank, es256_token, rs256_token, pool })
    }

    /// claim-enforcement: keys inline (as `jwt_authn` has them), one route
    /// requiring the scope, no audit line, verified-token cache of
    /// `cache_entries` (0: verify every token).
    pub fn claim_enforcement(&self, cache_entries: u32) -> Value {
        json!({
            "providers": [{
                "name": "idp", "issuer": self.idp.issuer(), "audiences": [AUDIENCE],
                "algorithms": ["ES256", "RS256"], "jwks": {"inline": self.idp.jwks()}
            }],
            "routes": [{"name": "orders", "match": {"pathPrefix": "/"}, "require": {"scopes": {"allOf": [SCOPE]}}}],
            "cache": {"maxEntries": cache_entries},
            "auditLog": false
        })
    }

    /// obo-credential-injection: `clientCredentials` for every request.
    pub fn obo_client_credentials(&self) -> Value {
        json!({
            "idps": [self.broker_idp()],
            // Like credential_injector, the row it is measured against:
            // the token goes to every request.
            "targets": [{"name": "market", "mode": "clientCredentials", "idp": "corp", "scope": "quotes",
                         "audiences": ["market-data"], "dangerouslyAllowUnauthenticatedCallers": true}],
            "auditLog": false
        })
    }

    /// obo-credential-injection: RFC 8693 exchange of the user's token
    /// (validated against the IdP's keys) for one audience.
    pub fn obo_token_exchange(&self) -> Value {
        json!({
            "idps": [self.broker_idp()],
            "subjectToken": {"validation": "jwks", "providers": [{
                "name": "corp", "issuer": self.idp.issuer(), "audiences": [AUDIENCE],
                "algorithms": ["ES256", "RS256"], "jwks": {"inline": self.idp.jwks()}}]},
            "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                         "audiences": ["portfolio-agent"], "scope": SCOPE}],
            "auditLog": false
        })
    }

    /// enforce-and-exchange: the chain's two filters in one pass, the
    /// exchange taking the token claim-enforcement verified.
    pub fn enforce_and_exchange(&self) -> Value {
        let mut exchange = self.obo_token_exchange();
        exchange["subjectToken"] = json!({"validation": "claimEnforcement", "issuers": [self.idp.issuer()]});
        json!({"claimEnforcement": self.claim_enforcement(10_000), "oboCredentialInjection": exchange})
    }

    fn broker_idp(&self) -> Value {
        json!({"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 3000,
               "clientId": BROKER, "clientSecret": DEMO_BROKER_SECRET})
    }

    /// in-task-auth-code: transfers need the bank's token.
    pub fn in_task(&self) -> Value {
        json!({
            "secondaryIdp": {
                "name": "bank",
                "authorizationEndpoint": self.bank.authorization_endpoint(),
                "tokenEndpoint": self.bank.token_endpoint(),
                "cluster": "bank_idp", "tokenPath": "/token", "timeoutMs": 3000,
                "clientId": "transfer-gateway", "clientSecret": "bank-secret",
                "redirectUri": REDIRECT,
                "scopes": ["transfers:write"],
                "audience": "bank-api",
                "providers": [{"name": "bank", "issuer": self.bank.issuer(), "audiences": ["bank-api"],
                               "algorithms": ["ES256", "RS256"], "jwks": {"inline": self.bank.jwks()}}]
            },
            "rules": [{"name": "transfers", "match": {"pathPrefix": "/"},
                       "when": {"source": "data", "pointer": "/operation", "equals": "transfer"}}],
            "primaryIdentity": {"providers": [{
                "name": "corp", "issuer": self.idp.issuer(), "audiences": [AUDIENCE],
                "algorithms": ["ES256", "RS256"], "jwks": {"inline": self.idp.jwks()}}]},
            "userBinding": {"secondaryClaim": "sub"},
            "auditLog": false
        })
    }
}

fn user_claims(idp: &MockIdp, sub: &str) -> Value {
    let mut claims = idp.standard_claims(sub, AUDIENCE, TOKEN_TTL.as_secs() as i64);
    claims["scope"] = json!("orders:read orders:write");
    claims["client_id"] = json!("web-app");
    claims
}
