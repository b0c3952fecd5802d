//! The agent card as the gateway serves it. A client calls the URL the card
//! names, so a card naming the agent sends every call past the gateway. The
//! card served here names the gateway (its public URL, the agent's path
//! kept) on every interface a client may pick, lists only the JSON-RPC
//! interfaces (the only binding this filter reads), and, when configured,
//! adds the bearer token the gateway takes the user from as a security
//! requirement, so a client knows before its first call.
//!
//! A2A v1.0 names interfaces in `supportedInterfaces[].url`; v0.3 in `url`
//! (with `preferredTransport`) and `additionalInterfaces[].url`. An agent
//! speaking both (the official SDK's cards do) gets both rewritten.
//!
//! Card signatures (`signatures`, JWS over the card) sign the agent's URL:
//! a rewritten card kept with them would fail every verifying client, and a
//! card passed untouched to keep them would send clients past the gateway.
//! So the served card has no signatures: it is the gateway's statement, not
//! the agent's, and a client that requires signed cards refuses it (closed,
//! and visible) instead of trusting a card whose URL the agent never signed.

use serde_json::{Map, Value, json};

/// How the gateway presents the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPolicy {
    /// The gateway's public origin (`https://agents.example.com`).
    pub public_origin: String,
    /// Whether to add the user's bearer token as a security requirement.
    pub declare_security: bool,
}

/// The name of the security scheme the gateway adds.
pub const SECURITY_SCHEME: &str = "baton-user";

/// The binding this filter reads.
const JSONRPC: &str = "JSONRPC";

/// Why a card cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardProblem {
    /// Not a JSON object.
    NotJson,
    /// No JSON-RPC interface the gateway could name.
    NoJsonRpcInterface,
    /// An interface URL that is not absolute.
    BadUrl,
}

impl CardProblem {
    /// Label for logs and audit lines.
    pub fn reason(self) -> &'static str {
        match self {
            CardProblem::NotJson => "agent_card_not_json",
            CardProblem::NoJsonRpcInterface => "agent_card_without_jsonrpc",
            CardProblem::BadUrl => "agent_card_url_not_absolute",
        }
    }
}

/// What the rewrite did besides naming the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardNotes {
    /// The agent's signatures were removed.
    pub signatures_dropped: bool,
    /// Interfaces of other bindings were left out.
    pub interfaces_dropped: usize,
}

/// The card `card` as the gateway serves it.
pub fn rewrite(card: &mut Value, policy: &CardPolicy) -> Result<CardNotes, CardProblem> {
    let Value::Object(card) = card else {
        return Err(CardProblem::NotJson);
    };
    let mut notes =
        CardNotes { signatures_dropped: card.remove("signatures").is_some(), ..CardNotes::default() };
    let v10 = card.contains_key("supportedInterfaces");
    let v03 = card.contains_key("url");
    if !v10 && !v03 {
        return Err(CardProblem::NoJsonRpcInterface);
    }
    if v10 {
        rewrite_v10_interfaces(card, policy, &mut notes)?;
    }
    if v03 {
        rewrite_v03_interfaces(card, policy, &mut notes)?;
    }
    if policy.declare_security {
        declare_security(card, v10, v03);
    }
    Ok(notes)
}

/// `url` with the gateway's origin: the agent's path and query kept.
fn through_gateway(url: &str, policy: &CardPolicy) -> Result<String, CardProblem> {
    let Some(after_scheme) = url.find("://").map(|at| at + 3) else {
        return Err(CardProblem::BadUrl);
    };
    let rest = &url[after_scheme..];
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if path_start == 0 {
        return Err(CardProblem::BadUrl);
    }
    let path = &rest[path_start..];
    let path = path.split('#').next().unwrap_or("");
    Ok(format!("{}{}", policy.public_origin.trim_end_matches('/'), path))
}

/// v1.0: the JSON-RPC interfaces, each naming the gateway.
fn rewrite_v10_interfaces(
    card: &mut Map<String, Value>,
    policy: &CardPolicy,
    notes: &mut CardNotes,
) -> Result<(), CardProblem> {
    let Some(Value::Array(interfaces)) = card.get_mut("supportedInterfaces") else {
        return Err(CardProblem::NoJsonRpcInterface);
    };
    let before = interfaces.len();
    interfaces.retain(|interface| interface.get("protocolBinding").and_then(Value::as_str) == Some(JSONRPC));
    notes.interfaces_dropped += before - interfaces.len();
    if interfaces.is_empty() {
        return Err(CardProblem::NoJsonRpcInterface);
    }
    for interface in interfaces.iter_mut() {
        let url = interface.get("url").and_then(Value::as_str).ok_or(CardProblem::BadUrl)?;
        interface["url"] = Value::String(through_gateway(url, policy)?);
    }
    Ok(())
}

/// v0.3: `url` is the JSON-RPC interface (`preferredTransport`, JSONRPC
/// when absent, or else the JSON-RPC entry of `additionalInterfaces`), and
/// `additionalInterfaces` keeps the JSON-RPC entries only.
fn rewrite_v03_interfaces(
    card: &mut Map<String, Value>,
    policy: &CardPolicy,
    notes: &mut CardNotes,
) -> Result<(), CardProblem> {
    let prefers_jsonrpc =
        card.get("preferredTransport").and_then(Value::as_str).unwrap_or(JSONRPC) == JSONRPC;
    let had_additional = card.contains_key("additionalInterfaces");
    let additional: Vec<Value> = match card.remove("additionalInterfaces") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let jsonrpc_url = if prefers_jsonrpc {
        card.get("url").and_then(Value::as_str).map(str::to_string)
    } else {
        additional
            .iter()
            .find(|entry| entry.get("transport").and_then(Value::as_str) == Some(JSONRPC))
            .and_then(|entry| entry.get("url"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let url = jsonrpc_url.ok_or(CardProblem::NoJsonRpcInterface)?;
    card.insert("url".into(), Value::String(through_gateway(&url, policy)?));
    if card.contains_key("preferredTransport") {
        card.insert("preferredTransport".into(), Value::String(JSONRPC.into()));
    }
    if had_additional {
        let mut kept = Vec::new();
        for mut entry in additional {
            if entry.get("transport").and_then(Value::as_str) != Some(JSONRPC) {
                notes.interfaces_dropped += 1;
                continue;
            }
            let url = entry.get("url").and_then(Value::as_str).ok_or(CardProblem::BadUrl)?;
            entry["url"] = Value::String(through_gateway(url, policy)?);
            kept.push(entry);
        }
        card.insert("additionalInterfaces".into(), Value::Array(kept));
    }
    Ok(())
}

/// Adds the user's bearer token as a scheme every call needs, in the forms
/// the card already uses: each of the agent's own requirements (any one of
/// which suffices) gets it added, or it is the one requirement.
fn declare_security(card: &mut Map<String, Value>, v10: bool, v03: bool) {
    let description = "A bearer token (JWT) naming the user, verified by the gateway";
    let schemes = card.entry("securitySchemes").or_insert_with(|| json!({}));
    if !schemes.is_object() {
        *schemes = json!({});
    }
    let mut scheme = Map::new();
    if v10 {
        scheme.insert(
            "httpAuthSecurityScheme".into(),
            json!({"scheme": "Bearer", "bearerFormat": "JWT", "description": description}),
        );
    }
    if v03 {
        scheme.insert("type".into(), json!("http"));
        scheme.insert("scheme".into(), json!("bearer"));
        scheme.insert("bearerFormat".into(), json!("JWT"));
        scheme.insert("description".into(), json!(description));
    }
    schemes[SECURITY_SCHEME] = Value::Object(scheme);
    if v10 {
        add_requirement(card, "securityRequirements", |requirement| {
            let schemes = requirement.entry("schemes").or_insert_with(|| json!({}));
            if let Value::Object(schemes) = schemes {
                schemes.insert(SECURITY_SCHEME.into(), json!({"list": []}));
            }
        });
    }
    if v03 {
        add_requirement(card, "security", |requirement| {
            requirement.insert(SECURITY_SCHEME.into(), json!([]));
        });
    }
}

/// Adds the scheme to every requirement in `field`, or makes it the one.
fn add_requirement(card: &mut Map<String, Value>, field: &str, add: impl Fn(&mut Map<String, Value>)) {
    let requirements = card.entry(field).or_insert_with(|| json!([]));
    if !requirements.is_array() {
        *requirements = json!([]);
    }
    if let Value::Array(list) = requirements {
        list.retain(Value::is_object);
        if list.is_empty() {
            list.push(json!({}));
        }
        for requirement in list.iter_mut() {
            if let Value::Object(requirement) = requirement {
                add(requirement);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CardPolicy {
        CardPolicy { public_origin: "https://gw.example".into(), declare_security: true }
    }

    /// A card as the official SDK serves it: v1.0 fields with the v0.3
    /// ones merged in.
    fn sdk_card() -> Value {
        json!({
            "name": "Transfer Agent",
            "supportedInterfaces": [
                {"url": "http://10.0.0.5:9011/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "http://10.0.0.5:9011/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
                {"url": "10.0.0.5:9012", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
            ],
            "url": "http://10.0.0.5:9011/a2a",
            "preferredTransport": "JSONRPC",
            "additionalInterfaces": [
                {"url": "http://10.0.0.5:9011/a2a", "transport": "JSONRPC"},
                {"url": "http://10.0.0.5:9011/rest", "transport": "HTTP+JSON"}
            ],
            "signatures": [{"protected": "eyJ", "signature": "sig"}],
            "securitySchemes": {"agent-key": {"apiKeySecurityScheme": {"name": "x-key", "location": "header"}, "type": "apiKey", "name": "x-key", "in": "header"}},
            "securityRequirements": [{"schemes": {"agent-key": {"list": []}}}],
            "security": [{"agent-key": []}],
            "skills": []
        })
    }

    #[test]
    fn every_interface_a_client_may_pick_names_the_gateway() {
        let mut card = sdk_card();
        let notes = rewrite(&mut card, &policy()).unwrap();
        assert_eq!(
            card["supportedInterfaces"],
            json!([
                {"url": "https://gw.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ])
        );
        assert_eq!(card["url"], "https://gw.example/a2a");
        assert_eq!(
            card["additionalInterfaces"],
            json!([{"url": "https://gw.example/a2a", "transport": "JSONRPC"}])
        );
        assert_eq!(notes, CardNotes { signatures_dropped: true, interfaces_dropped: 3 });
        assert!(card.get("signatures").is_none());
        // No URL in any interface names the agent any more.
        assert!(!card.to_string().contains("10.0.0.5"));
    }

    #[test]
    fn the_users_token_is_required_with_each_of_the_agents_own_requirements() {
        let mut card = sdk_card();
        rewrite(&mut card, &policy()).unwrap();
        assert_eq!(
            card["securityRequirements"],
            json!([{"schemes": {"agent-key": {"list": []}, "baton-user": {"list": []}}}])
        );
        assert_eq!(card["security"], json!([{"agent-key": [], "baton-user": []}]));
        let scheme = &card["securitySchemes"]["baton-user"];
        assert_eq!(scheme["httpAuthSecurityScheme"]["scheme"], "Bearer");
        assert_eq!(scheme["type"], "http");
        // A card of one version gets that version's form only.
        let mut v10 = json!({"supportedInterfaces": [{"url": "http://a/x", "protocolBinding": "JSONRPC"}]});
        rewrite(&mut v10, &policy()).unwrap();
        assert!(v10.get("security").is_none());
        assert_eq!(v10["securityRequirements"], json!([{"schemes": {"baton-user": {"list": []}}}]));
        assert!(v10["securitySchemes"]["baton-user"].get("type").is_none());
        // Not declared when so configured.
        let mut quiet = json!({"url": "http://a/x"});
        rewrite(&mut quiet, &CardPolicy { declare_security: false, ..policy() }).unwrap();
        assert!(quiet.get("security").is_none() && quiet.get("securitySchemes").is_none());
    }

    #[test]
    fn a_v03_card_preferring_another_transport_names_its_jsonrpc_interface() {
        let mut card = json!({
            "url": "http://agent/grpc", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "http://agent/rpc?x=1#frag", "transport": "JSONRPC"}]
        });
        rewrite(&mut card, &policy()).unwrap();
        assert_eq!(card["url"], "https://gw.example/rpc?x=1");
        assert_eq!(card["preferredTransport"], "JSONRPC");
    }

    #[test]
    fn a_card_the_gateway_cannot_name_itself_in_is_refused() {
        for (card, problem) in [
            (json!([]), CardProblem::NotJson),
            (json!({"name": "no interfaces"}), CardProblem::NoJsonRpcInterface),
            (
                json!({"supportedInterfaces": [{"url": "http://a/", "protocolBinding": "GRPC"}]}),
                CardProblem::NoJsonRpcInterface,
            ),
            (json!({"url": "http://a/", "preferredTransport": "GRPC"}), CardProblem::NoJsonRpcInterface),
            (json!({"url": "/relative"}), CardProblem::BadUrl),
            (json!({"url": "http://"}), CardProblem::BadUrl),
            (json!({"supportedInterfaces": [{"url": 7, "protocolBinding": "JSONRPC"}]}), CardProblem::BadUrl),
        ] {
            let mut card = card;
            assert_eq!(rewrite(&mut card, &policy()), Err(problem), "{card}");
        }
    }
}
