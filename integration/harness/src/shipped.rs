//! A shipped Envoy configuration (`envoy-configs/*.yaml`) run as a user
//! would run it, with only its ports changed: the test says where each port
//! the file names now is, and every port it does not map (listener, admin,
//! unused clusters) moves to a free one, so shipped configs run side by side
//! in parallel tests and never reach the demo's fixed ports.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;

use crate::envoy::{Envoy, Launch};
use crate::paths::temp_dir;
use crate::paths::workspace_root;

/// A file from `envoy-configs/` and the port changes to run it with.
#[derive(Debug, Clone)]
pub struct ShippedConfig {
    file: String,
    ports: Vec<(u16, u16)>,
    env: Vec<(String, String)>,
    workers: u32,
    log_level: String,
    component_levels: Option<String>,
}

impl ShippedConfig {
    /// `envoy-configs/<file>`.
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            ports: Vec::new(),
            env: Vec::new(),
            workers: 1,
            log_level: "info".to_string(),
            component_levels: None,
        }
    }

    /// The port the file calls `shipped` is `actual` here (in `port_value:`
    /// and in every `127.0.0.1:<port>` URL and authority).
    pub fn port(mut self, shipped: u16, actual: u16) -> Self {
        self.ports.push((shipped, actual));
        self
    }

    /// An environment variable for Envoy and, through
    /// `vm_config.environment_variables`, for the filters.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Worker threads (default 1).
    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// Envoy's log level for every component (default `info`, with the
    /// filters' own lines at `debug`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// Envoy's `--component-log-level` list as given (e.g. `wasm:debug`),
    /// instead of the default.
    pub fn component_log_level(mut self, levels: &str) -> Self {
        self.component_levels = Some(levels.to_string());
        self
    }

    /// The shipped file.
    pub fn path(&self) -> PathBuf {
        workspace_root().join("envoy-configs").join(&self.file)
    }

    /// The file's text with the ports changed; every port it names and the
    /// test did not map moves to a free port.
    pub fn text(&self) -> Result<String, String> {
        let shipped =
            fs::read_to_string(self.path()).map_err(|e| format!("{}: {e}", self.path().display()))?;
        let mut ports = self.ports.clone();
        // A port Envoy binds itself (listener, admin) and no URL names goes
        // to 0: Envoy picks a free one with no window for another process
        // to take it first. Other ports get one free now.
        let bound = bound_ports(&shipped);
        let in_urls = ports_in_urls(&shipped);
        for port in ports_named(&shipped) {
            if !ports.iter().any(|(from, _)| *from == port) {
                let to = if bound.contains(&port) && !in_urls.contains(&port) { 0 } else { free_port()? };
                ports.push((port, to));
            }
        }
        Ok(replace_ports(&shipped, &ports))
    }

    /// The port `shipped` runs on here: the one the test mapped it to, or
    /// the free one [`ShippedConfig::text`] chose (call after `text`).
    fn mapped(&self, shipped: u16) -> Option<u16> {
        self.ports.iter().find(|(from, _)| *from == shipped).map(|(_, to)| *to)
    }

    /// Starts Envoy on the changed file, from the workspace root (where the
    /// file's `target/...wasm` paths lead).
    pub fn start(&self) -> Result<Envoy, String> {
        let dir = temp_dir("shipped")?;
        let path = dir.join(&self.file);
        fs::write(&path, self.text()?).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let launch = Launch {
            workers: self.workers,
            env: &self.env,
            log_level: &self.log_level,
            cpus: None,
            component_levels: self.component_levels.as_deref(),
        };
        Envoy::start_in(dir, &path, &workspace_root(), &launch)
    }

    /// As [`ShippedConfig::start`], with the listener on a port the test
    /// chose (`shipped` is the listener port the file names), for flows
    /// where something outside Envoy must reach it by the URL the file
    /// configures (an OAuth redirect URI).
    pub fn start_listening_on(mut self, shipped: u16) -> Result<(Envoy, u16), String> {
        let port = match self.mapped(shipped) {
            Some(port) => port,
            None => {
                let port = free_port()?;
                self.ports.push((shipped, port));
                port
            }
        };
        Ok((self.start()?, port))
    }
}

/// Every port the file names in `port_value:` lines and loopback URLs.
fn ports_named(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut add = |digits: &str| {
        if let Ok(port) = digits.parse::<u16>()
            && port != 0
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    };
    for (marker, _) in text.match_indices("port_value:") {
        let rest = text[marker + "port_value:".len()..].trim_start();
        add(&rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]);
    }
    for (marker, _) in text.match_indices("127.0.0.1:") {
        let rest = &text[marker + "127.0.0.1:".len()..];
        add(&rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]);
    }
    ports
}

/// The `port_value:` ports under `listeners:` and `admin:`: those Envoy
/// binds.
fn bound_ports(text: &str) -> Vec<u16> {
    let mut bound = Vec::new();
    let mut binding = false;
    for line in text.lines() {
        let key = line.trim_start();
        if key.starts_with("listeners:") || line.starts_with("admin:") {
            binding = true;
        } else if key.starts_with("clusters:") || (!line.starts_with([' ', '#', '-']) && !line.is_empty()) {
            binding = false;
        }
        if binding {
            bound.extend(ports_named(line).into_iter().filter(|_| line.contains("port_value")));
        }
    }
    bound
}

/// The ports of `127.0.0.1:` URLs and authorities.
fn ports_in_urls(text: &str) -> Vec<u16> {
    ports_named(&text.replace("port_value:", "port_value="))
}

/// The text with each `(from, to)` port replaced where it stands as a port.
fn replace_ports(text: &str, ports: &[(u16, u16)]) -> String {
    let mut out = text.to_string();
    for (from, to) in ports {
        for prefix in ["port_value: ", "port_value:", "127.0.0.1:"] {
            out = replace_whole_number(&out, &format!("{prefix}{from}"), &format!("{prefix}{to}"));
        }
    }
    out
}

/// Replaces `from` (which ends in digits) only where no digit follows it.
fn replace_whole_number(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("finding a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_binds_the_listener_and_admin_ports() {
        let text = "static_resources:\n  listeners:\n  - address: {socket_address: {port_value: 10000}}\n    \
                    url: http://127.0.0.1:9000/x\n  clusters:\n  - endpoint: {port_value: 9001}\n\
                    admin:\n  address: {socket_address: {port_value: 9901}}\n";
        assert_eq!(bound_ports(text), [10000, 9901]);
        assert_eq!(ports_in_urls(text), [9000]);
    }

    #[test]
    fn ports_are_replaced_where_they_stand_as_ports() {
        let text = "port_value: 9000}\nport_value:19000\nurl: http://127.0.0.1:9000/x 127.0.0.1:19000 9000";
        assert_eq!(ports_named(text), [9000, 19000]);
        let changed = replace_ports(text, &[(9000, 1234)]);
        assert_eq!(
            changed,
            "port_value: 1234}\nport_value:19000\nurl: http://127.0.0.1:1234/x 127.0.0.1:19000 9000"
        );
    }

    #[test]
    fn every_shipped_config_names_only_loopback_ports_it_can_move() {
        let config = ShippedConfig::new("claim-enforcement.yaml").port(9000, 1).port(9001, 2);
        let text = config.text().unwrap_or_default();
        assert!(text.contains("port_value: 1}") || text.contains("port_value: 1\n"), "{text}");
        assert!(!text.contains("port_value: 10000"), "the listener moved: {text}");
        assert!(!text.contains("port_value: 9901"), "the admin port moved: {text}");
    }
}
