//! Envoy's own filters, configured to do what the Baton filter next to them
//! does: the yardstick every Baton figure is divided by.

use serde_json::{Value, json};

/// Metadata namespace `jwt_authn` writes the verified payload under.
const PAYLOAD_KEY: &str = "jwt_payload";

/// `envoy.filters.http.jwt_authn` requiring a token from one provider on
/// every path, keys inline. `cache_entries` sets `jwt_cache_config`
/// (verified-token cache); `None` verifies every token.
pub fn jwt_authn(issuer: &str, audience: &str, jwks: &Value, cache_entries: Option<u32>) -> Value {
    let mut provider = json!({
        "issuer": issuer,
        "audiences": [audience],
        "local_jwks": {"inline_string": jwks.to_string()},
        "forward": true,
        "payload_in_metadata": PAYLOAD_KEY
    });
    if let Some(entries) = cache_entries {
        provider["jwt_cache_config"] = json!({"jwt_cache_size": entries});
    }
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"idp": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    })
}

/// `envoy.filters.http.rbac` allowing only requests whose verified token
/// (from `jwt_authn`'s metadata) has `scope` in its `scope` claim. A plain
/// substring match: weaker than Baton's word match, and the cheapest
/// matcher RBAC has, so the anchor is never handicapped.
pub fn rbac_scope(scope: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": {"scope": {
            "permissions": [{"any": true}],
            "principals": [{"metadata": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": PAYLOAD_KEY}, {"key": "scope"}],
                "value": {"string_match": {"contains": scope}}
            }}]
        }}}
    })
}

/// `envoy.filters.http.credential_injector` with the OAuth2 client
/// credentials extension: Envoy fetches a token from `cluster` at
/// `token_uri` and injects it into every request. The client secret is
/// the static secret `secret_name`.
pub fn credential_injector(
    cluster: &str,
    token_uri: &str,
    client_id: &str,
    secret_name: &str,
    scopes: &[&str],
) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
        "overwrite": true,
        "credential": {
            "name": "envoy.http.injected_credentials.oauth2",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2",
                "token_endpoint": {"cluster": cluster, "uri": token_uri, "timeout": "3s"},
                "scopes": scopes,
                "client_credentials": {"client_id": client_id, "client_secret": {"name": secret_name}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_authn_caches_only_when_asked() {
        let jwks = json!({"keys": []});
        assert!(jwt_authn("i", "a", &jwks, None)["providers"]["idp"].get("jwt_cache_config").is_none());
        assert_eq!(
            jwt_authn("i", "a", &jwks, Some(2000))["providers"]["idp"]["jwt_cache_config"]["jwt_cache_size"],
            2000
        );
    }
}
