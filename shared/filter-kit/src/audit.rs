//! One audit line per decision: who, what, which rule, which outcome, and a
//! short token hash to correlate — never the token.

use baton_token::{Claims, TokenHash};

use crate::host::{Host, LogLevel};

/// Longest value written for one field; claims are attacker-influenced.
const MAX_VALUE_CHARS: usize = 128;

/// An audit line being assembled.
#[derive(Debug, Default)]
pub struct AuditLine {
    enabled: bool,
    fields: Vec<(&'static str, String)>,
}

impl AuditLine {
    /// A line; nothing is ever written (nor assembled) when `enabled` is
    /// false or the proxy would not write an info line.
    pub fn new(host: &dyn Host, enabled: bool) -> Self {
        let enabled = enabled && host.logs_at(LogLevel::Info);
        Self { enabled, fields: Vec::with_capacity(if enabled { 12 } else { 0 }) }
    }

    /// Whether the line will be written: fields that cost work to compute
    /// (a token's hash) are only worth computing then.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds a field.
    pub fn set(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.set_with(name, || value.to_string())
    }

    /// Adds a field whose value costs work (a hash, a number, a join):
    /// computed only when the line will be written.
    pub fn set_with(&mut self, name: &'static str, value: impl FnOnce() -> String) -> &mut Self {
        if self.enabled {
            self.fields.push((name, value()));
        }
        self
    }

    /// The route that applied.
    pub fn route(&mut self, name: &str) -> &mut Self {
        self.set("route", name)
    }

    /// The request goes upstream.
    pub fn allow(&mut self, reason: &str) -> &mut Self {
        self.set("decision", "allow").set("reason", reason)
    }

    /// The request is answered locally.
    pub fn deny(&mut self, status: u16, reason: &str) -> &mut Self {
        self.set("decision", "deny").set_with("status", || status.to_string()).set("reason", reason)
    }

    /// The token's short hash.
    pub fn token(&mut self, hash: &TokenHash) -> &mut Self {
        self.set_with("token", || hash.short())
    }

    /// Another token's short hash under its own name (e.g. `issued`).
    pub fn hash_as(&mut self, name: &'static str, hash: &TokenHash) -> &mut Self {
        self.set_with(name, || hash.short())
    }

    /// A token (or `state`) under `name`, by its short hash: hashed only
    /// when the line will be written, so a quiet line costs no SHA-256.
    pub fn token_as(&mut self, name: &'static str, token: &[u8]) -> &mut Self {
        self.set_with(name, || TokenHash::of(token).short())
    }

    /// Whether the result came from a cache (`hit_local`, `miss`, ...).
    pub fn cache(&mut self, label: &str) -> &mut Self {
        self.set("cache", label)
    }

    /// Who the verified token names.
    pub fn identity(&mut self, provider: &str, claims: &Claims) -> &mut Self {
        self.set("provider", provider);
        if let Some(iss) = &claims.iss {
            self.set("iss", iss);
        }
        if let Some(sub) = &claims.sub {
            self.set("sub", sub);
        }
        if let Some(client) = claims.client() {
            self.set("client", client);
        }
        if let Some(act) = &claims.act {
            self.set_with("act", || act.chain().join(">"));
        }
        self
    }

    /// The line as written.
    pub fn render(&self) -> String {
        let mut line = String::from("audit");
        for (name, value) in &self.fields {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            line.push_str(&quote(value));
        }
        line
    }

    /// Writes the line at info level.
    pub fn emit(&self, host: &dyn Host) {
        if self.enabled {
            host.log(LogLevel::Info, &self.render());
        }
    }
}

/// Bare when the value is plain; otherwise quoted, with quotes, backslashes
/// and control characters escaped, so no claim can forge a field or a line.
fn quote(value: &str) -> String {
    let truncated: String = value.chars().take(MAX_VALUE_CHARS).collect();
    let plain = !truncated.is_empty()
        && truncated.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '=');
    if plain {
        return truncated;
    }
    let mut quoted = String::with_capacity(truncated.len() + 2);
    quoted.push('"');
    for c in truncated.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::TestHost;

    #[test]
    fn values_cannot_forge_fields_or_lines() {
        let mut line = AuditLine::new(&TestHost::new(0), true);
        line.route("orders").allow("granted").set("sub", "alice decision=allow\n audit x=\"y\"");
        assert_eq!(
            line.render(),
            r#"audit route=orders decision=allow reason=granted sub="alice decision=allow\u{a} audit x=\"y\"""#
        );
    }

    #[test]
    fn long_values_are_truncated() {
        let mut line = AuditLine::new(&TestHost::new(0), true);
        line.set("sub", &"a".repeat(1000));
        assert_eq!(line.render().len(), "audit sub=".len() + MAX_VALUE_CHARS);
    }

    #[test]
    fn disabled_lines_collect_nothing() {
        let host = TestHost::new(0);
        let mut line = AuditLine::new(&host, false);
        line.route("r").allow("x");
        assert_eq!(line.render(), "audit");
        // Nor does a line the proxy would not write (its level is above info).
        host.set_log_level(LogLevel::Warn);
        let mut quiet = AuditLine::new(&host, true);
        quiet.route("r").allow("x");
        assert!(!quiet.enabled());
        quiet.emit(&host);
        assert!(host.logs().is_empty());
    }

    #[test]
    fn a_quiet_line_computes_no_field() {
        let host = TestHost::new(0);
        host.set_log_level(LogLevel::Warn);
        let mut quiet = AuditLine::new(&host, true);
        let mut computed = false;
        quiet.set_with("n", || {
            computed = true;
            String::new()
        });
        quiet.token_as("state", b"s").deny(401, "x");
        assert!(!computed);
        assert_eq!(quiet.render(), "audit");
        // Written, the same calls give their fields.
        host.set_log_level(LogLevel::Info);
        let mut line = AuditLine::new(&host, true);
        line.token_as("state", b"abc").deny(401, "x");
        assert_eq!(line.render(), "audit state=ba7816bf8f01 decision=deny status=401 reason=x");
    }
}
