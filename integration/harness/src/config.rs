//! Envoy bootstrap configuration for a test: one HTTP listener with the given
//! wasm filters in order, routing to a backend, plus named clusters the
//! filters call (IdPs). Written as JSON, which Envoy reads like YAML.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::paths::wasm_file;

/// One Baton filter on the listener.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// The filter's file stem, e.g. `claim_enforcement`.
    pub name: String,
    /// Its plugin configuration.
    pub config: Value,
}

/// An upstream cluster the filters can call.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Cluster name as referenced by filter configuration.
    pub name: String,
    /// Where it is.
    pub addr: SocketAddr,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EnvoySpec {
    filters: Vec<WasmFilter>,
    backend: Option<SocketAddr>,
    clusters: Vec<Cluster>,
    concurrency: u32,
    env: Vec<(String, String)>,
    hold_headers_for_body: bool,
}

impl EnvoySpec {
    /// A listener forwarding to `backend`.
    pub fn new(backend: SocketAddr) -> Self {
        Self {
            filters: Vec::new(),
            backend: Some(backend),
            clusters: Vec::new(),
            concurrency: 1,
            env: Vec::new(),
            hold_headers_for_body: true,
        }
    }

    /// A listener answering 200 itself (`direct_response`), no backend.
    pub fn direct_response() -> Self {
        Self {
            filters: Vec::new(),
            backend: None,
            clusters: Vec::new(),
            concurrency: 1,
            env: Vec::new(),
            hold_headers_for_body: true,
        }
    }

    /// Appends a filter (filters run in the order added).
    pub fn filter(mut self, name: &str, config: Value) -> Self {
        self.filters.push(WasmFilter { name: name.to_string(), config });
        self
    }

    /// Adds a cluster.
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push(Cluster { name: name.to_string(), addr });
        self
    }

    /// Worker threads (default 1).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Worker threads.
    pub fn workers(&self) -> u32 {
        self.concurrency
    }

    /// An environment variable for Envoy, passed on to the filters' VMs
    /// (`vm_config.environment_variables.host_env_keys`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Leaves `allow_on_headers_stop_iteration` at Envoy's default (false),
    /// as a user who forgot it would (to test the filters' answer to that).
    pub fn without_header_stop_iteration(mut self) -> Self {
        self.hold_headers_for_body = false;
        self
    }

    /// The environment variables given with [`EnvoySpec::env`].
    pub fn environment(&self) -> &[(String, String)] {
        &self.env
    }

    /// The bootstrap document. The log folder is unused for now but keeps
    /// room for access logs.
    pub fn bootstrap(&self, _dir: &Path) -> Value {
        let env_keys: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        let mut http_filters: Vec<Value> =
            self.filters.iter().map(|f| wasm_filter(f, &env_keys, self.hold_headers_for_body)).collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let route = match self.backend {
            Some(_) => json!({"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "15s"}}),
            None => {
                json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}})
            }
        };
        let mut clusters: Vec<Value> =
            self.clusters.iter().map(|c| static_cluster(&c.name, c.addr)).collect();
        if let Some(backend) = self.backend {
            clusters.push(static_cluster("backend", backend));
        }
        json!({
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "normalize_path": true,
                            "merge_slashes": true,
                            "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
                            "http_filters": http_filters
                        }
                    }]}]
                }],
                "clusters": clusters
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        })
    }
}

fn wasm_filter(filter: &WasmFilter, env_keys: &[&str], hold_headers_for_body: bool) -> Value {
    json!({
        "name": format!("baton.{}", filter.name),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": filter.name,
                "root_id": filter.name,
                "vm_config": {
                    "vm_id": format!("baton_{}", filter.name),
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_file(&filter.name).to_string_lossy()}},
                    "environment_variables": {"host_env_keys": env_keys}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter.config.to_string()
                },
                "fail_open": false,
                // Let a filter hold the headers while it reads the body
                // (Envoy >= 1.35); in-task-auth-code needs it.
                "allow_on_headers_stop_iteration": hold_headers_for_body
            }
        }
    })
}

fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(),
                "port_value": addr.port()
            }}}}]}]
        }
    })
}
