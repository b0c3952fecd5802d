//! Token endpoint requests and responses: RFC 6749 (client credentials,
//! client authentication, §5 responses and errors), RFC 8693 (token
//! exchange), RFC 7523 with Microsoft Entra's on-behalf-of parameters.
//!
//! Requests are built as form pairs and encoded once; responses are parsed
//! strictly: a response that is not exactly what the standard promises is
//! an [`TokenEndpointError::InvalidResponse`], never a token.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde_json::Value;

use crate::base64url;
use crate::secret::Secret;

/// `grant_type` of RFC 8693 token exchange.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of RFC 7523 JWT bearer (Entra's on-behalf-of flow).
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `grant_type` of RFC 6749 §4.4 client credentials.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8693 §3 token type: an OAuth access token.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3 token type: a refresh token.
pub const TOKEN_TYPE_REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// RFC 8693 §3 token type: an OIDC ID token.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693 §3 token type: a JWT.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 §3 token types Baton knows.
pub const TOKEN_TYPES: [&str; 4] =
    [TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_REFRESH_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT];

/// Form parameters a grant defines; configuration may not override them
/// with "extra parameters".
pub const RESERVED_PARAMETERS: [&str; 21] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "audience",
    "resource",
    "scope",
    "assertion",
    "requested_token_use",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
    "username",
    "password",
];

pub use crate::form::encode as form_urlencode;
use crate::form::encode_component;

/// How the gateway authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (the default).
    Basic {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: Secret,
    },
    /// `client_id` and `client_secret` in the form body.
    Post {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: Secret,
    },
    /// A public client (RFC 6749 §2.1): only `client_id` in the form body;
    /// PKCE protects the code instead of a secret.
    Public {
        /// Client id.
        client_id: String,
    },
}

impl ClientAuth {
    /// The client id.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::Public { client_id } => client_id,
        }
    }

    /// The `Authorization` header value, for Basic.
    pub fn authorization_header(&self) -> Option<Secret> {
        match self {
            ClientAuth::Basic { client_id, secret } => {
                let mut id = String::new();
                let mut pw = String::new();
                encode_component(client_id, &mut id);
                encode_component(secret.expose(), &mut pw);
                let raw = format!("{id}:{pw}");
                Some(Secret::new(format!("Basic {}", standard_base64(raw.as_bytes()))))
            }
            ClientAuth::Post { .. } | ClientAuth::Public { .. } => None,
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), as HTTP Basic uses.
fn standard_base64(bytes: &[u8]) -> String {
    let url = base64url::encode(bytes);
    let mut out: String = url
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// The grant of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// RFC 8693 token exchange.
    TokenExchange {
        /// The user's token.
        subject_token: Secret,
        /// Its RFC 8693 type.
        subject_token_type: String,
        /// The type wanted back, if any.
        requested_token_type: Option<String>,
        /// An actor token and its type.
        actor: Option<(Secret, String)>,
    },
    /// Entra on-behalf-of (RFC 7523 JWT bearer with `requested_token_use`).
    OnBehalfOf {
        /// The user's token.
        assertion: Secret,
    },
    /// RFC 6749 §4.4 client credentials.
    ClientCredentials,
    /// RFC 6749 §4.1.3 authorization code, with the RFC 7636 PKCE verifier.
    AuthorizationCode {
        /// The code the authorization server gave the user agent.
        code: Secret,
        /// The `redirect_uri` of the authorization request.
        redirect_uri: String,
        /// The PKCE verifier.
        code_verifier: Secret,
    },
}

/// A request to a token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The grant.
    pub grant: Grant,
    /// `audience` values (RFC 8693 §2.1; also sent for client credentials,
    /// as Auth0 and Okta expect).
    pub audiences: Vec<String>,
    /// `resource` values (RFC 8707).
    pub resources: Vec<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// Further, non-reserved parameters.
    pub extra: Vec<(String, String)>,
}

/// A body and headers ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedTokenRequest {
    /// `application/x-www-form-urlencoded` body (holds secrets).
    pub body: Secret,
    /// `Authorization` header for Basic client authentication.
    pub authorization: Option<Secret>,
}

impl TokenRequest {
    /// Encodes the request with client authentication.
    pub fn encode(&self, auth: &ClientAuth) -> EncodedTokenRequest {
        let mut pairs: Vec<(&str, &str)> =
            Vec::with_capacity(10 + self.audiences.len() + self.resources.len());
        match &self.grant {
            Grant::TokenExchange { subject_token, subject_token_type, requested_token_type, actor } => {
                pairs.push(("grant_type", GRANT_TOKEN_EXCHANGE));
                pairs.push(("subject_token", subject_token.expose()));
                pairs.push(("subject_token_type", subject_token_type));
                if let Some(requested) = requested_token_type {
                    pairs.push(("requested_token_type", requested));
                }
                if let Some((token, token_type)) = actor {
                    pairs.push(("actor_token", token.expose()));
                    pairs.push(("actor_token_type", token_type));
                }
            }
            Grant::OnBehalfOf { assertion } => {
                pairs.push(("grant_type", GRANT_JWT_BEARER));
                pairs.push(("assertion", assertion.expose()));
                pairs.push(("requested_token_use", "on_behalf_of"));
            }
            Grant::ClientCredentials => pairs.push(("grant_type", GRANT_CLIENT_CREDENTIALS)),
            Grant::AuthorizationCode { code, redirect_uri, code_verifier } => {
                pairs.push(("grant_type", "authorization_code"));
                pairs.push(("code", code.expose()));
                pairs.push(("redirect_uri", redirect_uri));
                pairs.push(("code_verifier", code_verifier.expose()));
            }
        }
        for audience in &self.audiences {
            pairs.push(("audience", audience));
        }
        for resource in &self.resources {
            pairs.push(("resource", resource));
        }
        if let Some(scope) = &self.scope {
            pairs.push(("scope", scope));
        }
        for (name, value) in &self.extra {
            pairs.push((name, value));
        }
        match auth {
            ClientAuth::Post { client_id, secret } => {
                pairs.push(("client_id", client_id));
                pairs.push(("client_secret", secret.expose()));
            }
            ClientAuth::Public { client_id } => pairs.push(("client_id", client_id)),
            ClientAuth::Basic { .. } => {}
        }
        EncodedTokenRequest {
            body: Secret::new(form_urlencode(&pairs)),
            authorization: auth.authorization_header(),
        }
    }
}

/// RFC 6749 §5.2 error codes (plus RFC 8693's `invalid_target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`.
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8693 §2.2.2).
    InvalidTarget,
    /// Any other code.
    Other(String),
}

impl OAuthErrorCode {
    fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            other => Self::Other(other.chars().take(64).collect()),
        }
    }

    /// The code as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::Other(code) => code,
        }
    }
}

/// What went wrong at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEndpointError {
    /// The IdP refused the request with an RFC 6749 §5.2 error.
    Rejected {
        /// The error code.
        code: OAuthErrorCode,
        /// HTTP status it came with.
        status: u16,
        /// The IdP's `error_description`, for the operator's log: printable
        /// ASCII only, at most 200 characters.
        description: Option<String>,
    },
    /// No answer, or a status that means the IdP is not serving (5xx, 429,
    /// or a 4xx without an OAuth error body).
    Unavailable {
        /// The status, `None` without a response.
        status: Option<u16>,
    },
    /// A 200 whose body is not a usable token response.
    InvalidResponse(&'static str),
}

impl TokenEndpointError {
    /// A short, stable label for metrics and audit lines.
    pub fn reason(&self) -> String {
        match self {
            Self::Rejected { code, .. } => format!("idp_rejected:{}", code.as_str()),
            Self::Unavailable { status: Some(status) } => format!("idp_unavailable:{status}"),
            Self::Unavailable { status: None } => "idp_unavailable:no_response".to_string(),
            Self::InvalidResponse(why) => format!("idp_invalid_response:{why}"),
        }
    }
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected { code, status, description: None } => {
                write!(f, "the identity provider refused the request ({}, HTTP {status})", code.as_str())
            }
            Self::Rejected { code, status, description: Some(description) } => {
                write!(
                    f,
                    "the identity provider refused the request ({}, HTTP {status}: {description:?})",
                    code.as_str()
                )
            }
            Self::Unavailable { status: Some(status) } => {
                write!(f, "the identity provider answered HTTP {status}")
            }
            Self::Unavailable { status: None } => f.write_str("the identity provider did not answer"),
            Self::InvalidResponse(why) => write!(f, "the identity provider's answer is unusable: {why}"),
        }
    }
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The issued token.
    pub access_token: Secret,
    /// `Bearer`, or `N_A` when the issued token is not an access token.
    pub token_type: String,
    /// RFC 8693 `issued_token_type`, when given.
    pub issued_token_type: Option<String>,
    /// Lifetime in seconds, when given.
    pub expires_in: Option<u64>,
    /// Granted scope, when given.
    pub scope: Option<String>,
    /// The OpenID Connect ID token, when given (authorization code grant
    /// with `openid`).
    pub id_token: Option<Secret>,
}

/// The longest lifetime taken from `expires_in` (a day): a bigger value is
/// capped, so a broken IdP cannot pin a token in the cache.
pub const MAX_EXPIRES_IN_SECS: u64 = 86_400;

/// What the response must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseExpectation<'a> {
    /// The `requested_token_type` sent: `issued_token_type` must equal it.
    pub requested_token_type: Option<&'a str>,
    /// Whether this was a token exchange (`issued_token_type` is required).
    pub token_exchange: bool,
}

impl TokenResponse {
    /// Interprets a token endpoint answer: `status` (`None` for no
    /// response) and body.
    pub fn parse(
        status: Option<u16>,
        body: &[u8],
        expect: ResponseExpectation<'_>,
    ) -> Result<Self, TokenEndpointError> {
        let Some(status) = status else {
            return Err(TokenEndpointError::Unavailable { status: None });
        };
        let json: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
        if status != 200 {
            // RFC 6749 §5.2: errors come as 400 (401 for invalid_client) with
            // a JSON error code. Anything else means the IdP is not serving.
            return match json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str) {
                Some(code) if (400..500).contains(&status) && status != 429 => {
                    let description = json
                        .as_ref()
                        .and_then(|j| j.get("error_description"))
                        .and_then(Value::as_str)
                        .map(|text| {
                            text.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(200).collect()
                        });
                    Err(TokenEndpointError::Rejected {
                        code: OAuthErrorCode::parse(code),
                        status,
                        description,
                    })
                }
                _ => Err(TokenEndpointError::Unavailable { status: Some(status) }),
            };
        }
        let Some(json) = json else {
            return Err(TokenEndpointError::InvalidResponse("not a JSON object"));
        };
        let access_token = match json.get("access_token") {
            Some(Value::String(token)) if !token.is_empty() => token,
            Some(_) => return Err(TokenEndpointError::InvalidResponse("access_token is not a string")),
            None => return Err(TokenEndpointError::InvalidResponse("no access_token")),
        };
        if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenEndpointError::InvalidResponse(
                "access_token has characters a header cannot carry",
            ));
        }
        let token_type = match json.get("token_type") {
            Some(Value::String(token_type)) if token_type.eq_ignore_ascii_case("bearer") => {
                "Bearer".to_string()
            }
            Some(Value::String(token_type)) if token_type == "N_A" => "N_A".to_string(),
            Some(Value::String(_)) => {
                return Err(TokenEndpointError::InvalidResponse("token_type is neither Bearer nor N_A"));
            }
            _ => return Err(TokenEndpointError::InvalidResponse("no token_type")),
        };
        let issued_token_type = match json.get("issued_token_type") {
            None => None,
            Some(Value::String(issued)) => Some(issued.clone()),
            Some(_) => return Err(TokenEndpointError::InvalidResponse("issued_token_type is not a string")),
        };
        if expect.token_exchange && issued_token_type.is_none() {
            return Err(TokenEndpointError::InvalidResponse("no issued_token_type"));
        }
        if let (Some(requested), Some(issued)) = (expect.requested_token_type, &issued_token_type)
            && requested != issued
        {
            return Err(TokenEndpointError::InvalidResponse(
                "issued_token_type differs from the requested type",
            ));
        }
        let expires_in = match json.get("expires_in") {
            None => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(seconds) => Some(seconds.min(MAX_EXPIRES_IN_SECS)),
                None => {
                    return Err(TokenEndpointError::InvalidResponse(
                        "expires_in is not a non-negative integer",
                    ));
                }
            },
            // Entra's v1 endpoint sends numbers as strings: accept digits only.
            Some(Value::String(text))
                if !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                text.parse::<u64>().ok().map(|seconds| seconds.min(MAX_EXPIRES_IN_SECS))
            }
            Some(_) => {
                return Err(TokenEndpointError::InvalidResponse("expires_in is not a non-negative integer"));
            }
        };
        let scope = json.get("scope").and_then(Value::as_str).map(String::from);
        let id_token = match json.get("id_token") {
            None => None,
            Some(Value::String(token)) if !token.is_empty() => Some(Secret::new(token.clone())),
            Some(_) => return Err(TokenEndpointError::InvalidResponse("id_token is not a string")),
        };
        Ok(Self {
            access_token: Secret::new(access_token.clone()),
            token_type,
            issued_token_type,
            expires_in,
            scope,
            id_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn exchange() -> TokenRequest {
        TokenRequest {
            grant: Grant::TokenExchange {
                subject_token: Secret::new("subject.jwt.sig"),
                subject_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
                requested_token_type: Some(TOKEN_TYPE_ACCESS_TOKEN.into()),
                actor: Some((Secret::new("actor.jwt.sig"), TOKEN_TYPE_JWT.into())),
            },
            audiences: vec!["portfolio-agent".into(), "ledger api".into()],
            resources: vec!["https://ledger.example/api".into()],
            scope: Some("read write".into()),
            extra: vec![("tenant".into(), "acme&co".into())],
        }
    }

    #[test]
    fn token_exchange_form_per_rfc_8693() {
        let auth = ClientAuth::Basic { client_id: "agent-broker".into(), secret: Secret::new("s3cr3t") };
        let encoded = exchange().encode(&auth);
        assert_eq!(
            encoded.body.expose(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=subject.jwt.sig\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &actor_token=actor.jwt.sig&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &audience=portfolio-agent&audience=ledger+api&resource=https%3A%2F%2Fledger.example%2Fapi\
             &scope=read+write&tenant=acme%26co"
        );
        assert_eq!(encoded.authorization.unwrap().expose(), "Basic YWdlbnQtYnJva2VyOnMzY3IzdA==");
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret_first() {
        let auth = ClientAuth::Basic { client_id: "a:b".into(), secret: Secret::new("p w+") };
        // "a%3Ab:p+w%2B" in standard base64.
        assert_eq!(auth.authorization_header().unwrap().expose(), "Basic YSUzQWI6cCt3JTJC");
    }

    #[test]
    fn post_auth_puts_credentials_in_the_body() {
        let auth = ClientAuth::Post { client_id: "svc".into(), secret: Secret::new("pw") };
        let request = TokenRequest {
            grant: Grant::ClientCredentials,
            audiences: vec![],
            resources: vec![],
            scope: Some("x".into()),
            extra: vec![],
        };
        let encoded = request.encode(&auth);
        assert_eq!(
            encoded.body.expose(),
            "grant_type=client_credentials&scope=x&client_id=svc&client_secret=pw"
        );
        assert!(encoded.authorization.is_none());
    }

    #[test]
    fn authorization_code_form_with_pkce_for_a_public_client() {
        let request = TokenRequest {
            grant: Grant::AuthorizationCode {
                code: Secret::new("c0de"),
                redirect_uri: "https://gw.example/cb".into(),
                code_verifier: Secret::new("v".repeat(43)),
            },
            audiences: vec![],
            resources: vec![],
            scope: None,
            extra: vec![],
        };
        let encoded = request.encode(&ClientAuth::Public { client_id: "gw".into() });
        assert_eq!(
            encoded.body.expose(),
            alloc::format!(
                "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Fgw.example%2Fcb&code_verifier={}&client_id=gw",
                "v".repeat(43)
            )
        );
        assert!(encoded.authorization.is_none());
    }

    #[test]
    fn on_behalf_of_form() {
        let request = TokenRequest {
            grant: Grant::OnBehalfOf { assertion: Secret::new("user.jwt") },
            audiences: vec![],
            resources: vec![],
            scope: Some("api://portfolio/.default".into()),
            extra: vec![],
        };
        let auth = ClientAuth::Post { client_id: "c".into(), secret: Secret::new("s") };
        assert_eq!(
            request.encode(&auth).body.expose(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=user.jwt\
             &requested_token_use=on_behalf_of&scope=api%3A%2F%2Fportfolio%2F.default&client_id=c&client_secret=s"
        );
    }

    #[test]
    fn encoded_request_debug_hides_secrets() {
        let encoded =
            exchange().encode(&ClientAuth::Basic { client_id: "a".into(), secret: Secret::new("s3cr3t") });
        let debug = alloc::format!("{encoded:?} {:?}", exchange());
        assert!(
            !debug.contains("subject.jwt") && !debug.contains("s3cr3t") && !debug.contains("actor.jwt"),
            "{debug}"
        );
    }

    const EXCHANGE: ResponseExpectation<'static> =
        ResponseExpectation { requested_token_type: Some(TOKEN_TYPE_ACCESS_TOKEN), token_exchange: true };

    fn parse(
        status: u16,
        body: &str,
        expect: ResponseExpectation<'_>,
    ) -> Result<TokenResponse, TokenEndpointError> {
        TokenResponse::parse(Some(status), body.as_bytes(), expect)
    }

    #[test]
    fn parses_a_token_exchange_response() {
        let response = parse(
            200,
            r#"{"access_token":"new.jwt.sig","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",
               "token_type":"bearer","expires_in":300,"scope":"read"}"#,
            EXCHANGE,
        )
        .unwrap();
        assert_eq!(response.access_token.expose(), "new.jwt.sig");
        assert_eq!(response.token_type, "Bearer");
        assert_eq!(response.expires_in, Some(300));
        assert_eq!(response.scope.as_deref(), Some("read"));
    }

    #[test]
    fn refuses_unusable_success_responses() {
        let invalid = |body: &str, expect| match parse(200, body, expect) {
            Err(TokenEndpointError::InvalidResponse(why)) => why,
            other => panic!("{body}: {other:?}"),
        };
        let plain = ResponseExpectation::default();
        assert_eq!(invalid("<html>", plain), "not a JSON object");
        assert_eq!(invalid(r#"{"token_type":"Bearer"}"#, plain), "no access_token");
        assert_eq!(
            invalid(r#"{"access_token":"","token_type":"Bearer"}"#, plain),
            "access_token is not a string"
        );
        assert_eq!(
            invalid(r#"{"access_token":"a b","token_type":"Bearer"}"#, plain),
            "access_token has characters a header cannot carry"
        );
        assert_eq!(invalid(r#"{"access_token":"t"}"#, plain), "no token_type");
        assert_eq!(
            invalid(r#"{"access_token":"t","token_type":"MAC"}"#, plain),
            "token_type is neither Bearer nor N_A"
        );
        assert_eq!(
            invalid(r#"{"access_token":"t","token_type":"Bearer"}"#, EXCHANGE),
            "no issued_token_type"
        );
        assert_eq!(
            invalid(
                r#"{"access_token":"t","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
                EXCHANGE
            ),
            "issued_token_type differs from the requested type"
        );
        for expires_in in ["-5", "1.5", "\"abc\"", "\"-5\"", "true", "\"\""] {
            let body =
                alloc::format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#);
            assert_eq!(invalid(&body, plain), "expires_in is not a non-negative integer", "{expires_in}");
        }
    }

    #[test]
    fn expires_in_strings_and_huge_values() {
        let ok = |expires_in: &str| {
            let body =
                alloc::format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#);
            parse(200, &body, ResponseExpectation::default()).unwrap().expires_in
        };
        assert_eq!(ok("\"3599\""), Some(3599));
        assert_eq!(ok("99999999999"), Some(MAX_EXPIRES_IN_SECS));
        assert_eq!(ok("0"), Some(0));
    }

    #[test]
    fn errors_are_rejections_or_unavailability() {
        let rejected = |status, body: &str| parse(status, body, EXCHANGE).unwrap_err();
        assert_eq!(
            rejected(400, r#"{"error":"invalid_grant","error_description":"expired\u0007 token"}"#),
            TokenEndpointError::Rejected {
                code: OAuthErrorCode::InvalidGrant,
                status: 400,
                description: Some("expired token".into())
            }
        );
        assert_eq!(
            rejected(400, r#"{"error":"invalid_target"}"#),
            TokenEndpointError::Rejected {
                code: OAuthErrorCode::InvalidTarget,
                status: 400,
                description: None
            }
        );
        assert_eq!(
            rejected(401, r#"{"error":"invalid_client"}"#),
            TokenEndpointError::Rejected {
                code: OAuthErrorCode::InvalidClient,
                status: 401,
                description: None
            }
        );
        assert_eq!(
            rejected(500, r#"{"error":"server_error"}"#),
            TokenEndpointError::Unavailable { status: Some(500) }
        );
        assert_eq!(rejected(503, "<html>busy</html>"), TokenEndpointError::Unavailable { status: Some(503) });
        assert_eq!(
            rejected(429, r#"{"error":"slow_down"}"#),
            TokenEndpointError::Unavailable { status: Some(429) }
        );
        assert_eq!(rejected(404, "not found"), TokenEndpointError::Unavailable { status: Some(404) });
        assert_eq!(
            TokenResponse::parse(None, b"", EXCHANGE),
            Err(TokenEndpointError::Unavailable { status: None })
        );
        assert_eq!(rejected(400, r#"{"error":"custom_thing"}"#).reason(), "idp_rejected:custom_thing");
    }
}
