//! Envoy bootstrap configuration for a test: one HTTP listener with the given
//! wasm filters in order, routing to a backend, plus named clusters the
//! filters call (IdPs). Written as JSON, which Envoy reads like YAML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// One HTTP filter on the listener, before the router.
#[derive(Debug, Clone)]
pub enum HttpFilter {
    /// A Baton filter.
    Wasm(WasmFilter),
    /// One of Envoy's own filters (`jwt_authn`, `rbac`, ...), for
    /// side-by-side comparisons.
    Native {
        /// The filter name, e.g. `envoy.filters.http.jwt_authn`.
        name: String,
        /// Its `typed_config`, `@type` included.
        typed_config: Value,
    },
}

/// Where the listener's one route goes.
#[derive(Debug, Clone)]
enum RouteTarget {
    /// Every request to these backends, in turn (round robin).
    Backend(Vec<SocketAddr>),
    /// Envoy answers itself: status 200 with this body and content type.
    Direct { body: String, content_type: String },
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
    filters: Vec<HttpFilter>,
    route: RouteTarget,
    clusters: Vec<Cluster>,
    raw_clusters: Vec<Value>,
    secrets: Vec<(String, String)>,
    concurrency: u32,
    env: Vec<(String, String)>,
    hold_headers_for_body: bool,
    log_level: String,
    cpus: Option<String>,
    downstream_tls: Option<Value>,
    wasm_dir: Option<PathBuf>,
    /// The listener's port (0: Envoy picks a free one).
    listen_port: u16,
}

impl EnvoySpec {
    /// A listener forwarding to `backend`.
    pub fn new(backend: SocketAddr) -> Self {
        Self::with_route(RouteTarget::Backend(vec![backend]))
    }

    /// A round-robin load balancer in front of `replicas` (say, Envoys
    /// running the filters), as a Kubernetes Service puts one.
    pub fn balancer(replicas: &[SocketAddr]) -> Self {
        Self::with_route(RouteTarget::Backend(replicas.to_vec()))
    }

    /// A listener answering 200 `ok` itself (`direct_response`), no backend.
    pub fn direct_response() -> Self {
        Self::direct_response_with("ok", "text/plain")
    }

    /// A listener answering 200 with `body` itself (`direct_response`).
    pub fn direct_response_with(body: &str, content_type: &str) -> Self {
        Self::with_route(RouteTarget::Direct {
            body: body.to_string(),
            content_type: content_type.to_string(),
        })
    }

    fn with_route(route: RouteTarget) -> Self {
        Self {
            filters: Vec::new(),
            route,
            clusters: Vec::new(),
            raw_clusters: Vec::new(),
            secrets: Vec::new(),
            concurrency: 1,
            env: Vec::new(),
            hold_headers_for_body: true,
            log_level: "info".to_string(),
            cpus: None,
            downstream_tls: None,
            wasm_dir: None,
            listen_port: 0,
        }
    }

    /// Listens on `port` (a port something outside Envoy must name, as an
    /// OAuth redirect URI does) instead of one Envoy picks.
    pub fn listen_on(mut self, port: u16) -> Self {
        self.listen_port = port;
        self
    }

    /// Loads the Baton modules from `dir` instead of the cargo-built ones
    /// (the bench measures the `wasm-opt -Oz` modules that ship).
    pub fn wasm_dir(mut self, dir: &Path) -> Self {
        self.wasm_dir = Some(dir.to_path_buf());
        self
    }

    /// Appends a Baton filter (filters run in the order added).
    pub fn filter(mut self, name: &str, config: Value) -> Self {
        self.filters.push(HttpFilter::Wasm(WasmFilter { name: name.to_string(), config }));
        self
    }

    /// The listener speaks TLS: `context` is its `DownstreamTlsContext`
    /// (without `@type`), e.g. one requiring client certificates.
    pub fn downstream_tls(mut self, context: Value) -> Self {
        self.downstream_tls = Some(context);
        self
    }

    /// Appends one of Envoy's own filters by name and `typed_config`.
    pub fn native_filter(mut self, name: &str, typed_config: Value) -> Self {
        self.filters.push(HttpFilter::Native { name: name.to_string(), typed_config });
        self
    }

    /// A static generic secret (`static_resources.secrets`), e.g. a client
    /// secret for `credential_injector`.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_string(), value.to_string()));
        self
    }

    /// Envoy's log level for everything (default `info`, with the wasm
    /// component at `debug`); a benchmark runs at `warning`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// The log level.
    pub fn level(&self) -> &str {
        &self.log_level
    }

    /// Pins Envoy to these CPUs (`taskset -c LIST`).
    pub fn cpus(mut self, list: &str) -> Self {
        self.cpus = Some(list.to_string());
        self
    }

    /// The CPU list Envoy is pinned to, if any.
    pub fn cpu_list(&self) -> Option<&str> {
        self.cpus.as_deref()
    }

    /// Adds a cluster.
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push(Cluster { name: name.to_string(), addr });
        self
    }

    /// Adds a cluster written out whole (several endpoints, health checks,
    /// outlier detection: what one address cannot say).
    pub fn raw_cluster(mut self, cluster: Value) -> Self {
        self.raw_clusters.push(cluster);
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
        let mut http_filters: Vec<Value> = self
            .filters
            .iter()
            .map(|filter| match filter {
                HttpFilter::Wasm(wasm) => {
                    wasm_filter(wasm, &env_keys, self.hold_headers_for_body, self.wasm_dir.as_deref())
                }
                HttpFilter::Native { name, typed_config } => {
                    json!({"name": name, "typed_config": typed_config})
                }
            })
            .collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let route = match &self.route {
            RouteTarget::Backend(_) => {
                json!({"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "15s"}})
            }
            RouteTarget::Direct { body, content_type } => json!({
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": body}},
                "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
            }),
        };
        let mut clusters: Vec<Value> =
            self.clusters.iter().map(|c| static_cluster(&c.name, c.addr)).collect();
        clusters.extend(self.raw_clusters.iter().cloned());
        if let RouteTarget::Backend(backends) = &self.route {
            clusters.push(round_robin_cluster("backend", backends));
        }
        let secrets: Vec<Value> = self
            .secrets
            .iter()
            .map(
                |(name, value)| json!({"name": name, "generic_secret": {"secret": {"inline_string": value}}}),
            )
            .collect();
        let mut filter_chain = json!({"filters": [{
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
        }]});
        if let Some(context) = &self.downstream_tls {
            let mut typed_config = context.clone();
            typed_config["@type"] =
                json!("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext");
            filter_chain["transport_socket"] =
                json!({"name": "envoy.transport_sockets.tls", "typed_config": typed_config});
        }
        json!({
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.listen_port}},
                    "filter_chains": [filter_chain]
                }],
                "clusters": clusters,
                "secrets": secrets
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        })
    }
}

fn wasm_filter(
    filter: &WasmFilter,
    env_keys: &[&str],
    hold_headers_for_body: bool,
    wasm_dir: Option<&Path>,
) -> Value {
    let file = match wasm_dir {
        Some(dir) => dir.join(format!("{}.wasm", filter.name)),
        None => wasm_file(&filter.name),
    };
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
                    "code": {"local": {"filename": file.to_string_lossy()}},
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
    round_robin_cluster(name, &[addr])
}

/// A cluster of `addrs`, taken in turn (Envoy's default policy).
fn round_robin_cluster(name: &str, addrs: &[SocketAddr]) -> Value {
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|addr| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(),
                "port_value": addr.port()
            }}}})
        })
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}
    })
}
