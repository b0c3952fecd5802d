//! The identity chain as a trace: one line per hop (who called whom,
//! through which filter, what it decided, and the decoded claims of the
//! token the upstream received), printed as it happens and again as a
//! table at the end. The integration test `tests/demo.rs` reads these lines.

use serde_json::Value;

/// One hop through an Envoy.
struct Hop {
    route: String,
    filter: String,
    decision: String,
    upstream: String,
}

/// The hops so far.
#[derive(Default)]
pub struct Trace {
    hops: Vec<Hop>,
}

impl Trace {
    /// Records and prints a hop.
    pub fn hop(&mut self, route: &str, filter: &str, decision: &str, upstream: String) {
        let hop = Hop { route: route.into(), filter: filter.into(), decision: decision.into(), upstream };
        println!("  {}", line(self.hops.len() + 1, &hop));
        self.hops.push(hop);
    }

    /// The whole chain.
    pub fn print(&self) {
        println!("\nthe identity chain, hop by hop:");
        for (index, hop) in self.hops.iter().enumerate() {
            println!("  {}", line(index + 1, hop));
        }
    }
}

fn line(number: usize, hop: &Hop) -> String {
    format!("hop {number} | {:<33} | {:<45} | {:<32} | {}", hop.route, hop.filter, hop.decision, hop.upstream)
}

/// `sub`, `aud`, the `act` chain (most recent actor first) and `scope` of
/// a claim set; never the token itself.
pub fn claims_line(claims: &Value) -> String {
    if !claims.is_object() {
        return "no token".to_string();
    }
    let text = |name: &str| match &claims[name] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("sub={} aud={} act={} scope=\"{}\"", text("sub"), text("aud"), act_chain(claims), text("scope"))
}

/// `act` flattened: `portfolio-agent<-agent-broker` (RFC 8693 §4.1 nests
/// prior actors inside `act`).
pub fn act_chain(claims: &Value) -> String {
    let mut actors = Vec::new();
    let mut act = &claims["act"];
    while let Some(sub) = act["sub"].as_str() {
        actors.push(sub.to_string());
        act = &act["act"];
    }
    if actors.is_empty() { "-".to_string() } else { actors.join("<-") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn act_chains_read_most_recent_first() {
        let claims = json!({"sub": "alice", "aud": "ledger-api", "scope": "portfolio:read",
                            "act": {"sub": "portfolio-agent", "act": {"sub": "agent-broker"}}});
        assert_eq!(act_chain(&claims), "portfolio-agent<-agent-broker");
        assert_eq!(
            claims_line(&claims),
            "sub=alice aud=ledger-api act=portfolio-agent<-agent-broker scope=\"portfolio:read\""
        );
        assert_eq!(act_chain(&json!({"sub": "alice"})), "-");
        assert_eq!(claims_line(&Value::Null), "no token");
    }
}
