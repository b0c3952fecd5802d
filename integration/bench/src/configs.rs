//! The configurations measured side by side: passthrough baselines, Envoy's
//! native filters (the anchors) and the Baton filters, each with its
//! workload, what proves it did its work, and the target it must reach.

use baton_harness::EnvoySpec;
use serde_json::json;

use crate::native;
use crate::world::{AUDIENCE, BROKER, SCOPE, World};
use crate::wrk::Workload;

/// The static secret holding the broker's client secret for
/// `credential_injector`.
const BROKER_SECRET_NAME: &str = "broker-client-secret";

/// The A2A answer every a2a row's route gives: a completed task whose id
/// the in-task filter has bound the user's bank token to.
pub const AGENT_TASK: &str = "t-bench";

/// What kind of row this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No filter: the ceiling.
    Passthrough,
    /// A wasm filter doing (almost) nothing: what any wasm filter pays.
    Floor,
    /// Envoy's own filters.
    Native,
    /// A Baton filter.
    Baton,
}

/// What a Baton row must reach against another row (its anchor), both
/// measured round by round in the same run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Throughput at least `min` times the anchor's.
    Ratio {
        /// The anchor row's id.
        anchor: &'static str,
        /// Minimum throughput ratio.
        min: f64,
    },
    /// Envoy CPU per request at most `max_us` above the anchor's.
    CpuAbove {
        /// The anchor row's id.
        anchor: &'static str,
        /// Most Envoy CPU per request above the anchor, µs.
        max_us: f64,
    },
    /// The throughput ratio, reported with no bound.
    Report {
        /// The anchor row's id.
        anchor: &'static str,
    },
    /// Envoy CPU per request above the anchor's, reported with no bound.
    ReportCpu {
        /// The anchor row's id.
        anchor: &'static str,
    },
}

impl Target {
    /// The row it is measured against.
    pub fn anchor(&self) -> &'static str {
        match self {
            Target::Ratio { anchor, .. }
            | Target::CpuAbove { anchor, .. }
            | Target::Report { anchor }
            | Target::ReportCpu { anchor } => anchor,
        }
    }
}

/// Which build of the Baton modules a row loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// After `wasm-opt -Oz`, as `make oci` packages them.
    Shipped,
    /// As cargo built them.
    AsBuilt,
}

/// One Envoy and how it is driven.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// Short id, stable across runs (JSON key).
    pub id: &'static str,
    /// What it is, for the table.
    pub label: &'static str,
    /// Row kind.
    pub kind: Kind,
    /// The Envoy to start.
    pub spec: EnvoySpec,
    /// The requests.
    pub workload: Workload,
    /// The passthrough row driven by the same workload shape.
    pub baseline: &'static str,
    /// The targets, for Baton rows.
    pub targets: Vec<Target>,
    /// Which build of the modules it loads.
    pub module: Module,
    /// The status of the workload's request without its credential (the
    /// filter must refuse it), if it needs one.
    pub refuses_without_token: Option<u16>,
    /// Stats that must grow by at least the number of measured requests:
    /// proof that the filter did the work (and hit its cache) on each.
    pub work_stats: Vec<&'static str>,
    /// Counts token-endpoint calls (cached exchange configurations).
    pub counts_idp_calls: bool,
    /// Needs the in-task authorization completed before measuring.
    pub needs_bank_authorization: bool,
}

/// A direct_response listener pinned to `cpus`, quiet.
fn listener(cpus: &str) -> EnvoySpec {
    EnvoySpec::direct_response().log_level("warning").cpus(cpus)
}

fn a2a_listener(cpus: &str) -> EnvoySpec {
    EnvoySpec::direct_response_with(&agent_answer(), "application/json").log_level("warning").cpus(cpus)
}

/// The A2A anchor: Envoy's buffer filter reads the whole message before
/// the route answers, as any filter that reads the message does. Without
/// it, Envoy answered before the body arrived, an early response that cost
/// the anchor a 15 ms p99 the filter it judges never paid.
fn a2a_anchor(cpus: &str) -> EnvoySpec {
    a2a_listener(cpus).native_filter(
        "envoy.filters.http.buffer",
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
               "max_request_bytes": 1_048_576}),
    )
}

/// The agent's answer: a v0.3 task that stays open for the next transfer
/// (a completed task takes no more messages, and the gateway drops its
/// token with it).
fn agent_answer() -> String {
    json!({"jsonrpc": "2.0", "id": "req-1", "result": {
        "kind": "task", "id": AGENT_TASK, "contextId": "ctx-1",
        "status": {"state": "input-required", "message": {"kind": "message", "role": "agent", "messageId": "a-1",
                   "parts": [{"kind": "text", "text": "sent 250 to bob; anything else?"}]}}}})
    .to_string()
}

/// A transfer message in task `task` (v0.3 `message/send`).
pub fn transfer_message(task: Option<&str>) -> String {
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m-1", "parts": [
        {"kind": "text", "text": "send 250 to bob"},
        {"kind": "data", "data": {"operation": "transfer", "amount": 250, "to": "bob"}}]});
    if let Some(task) = task {
        message["taskId"] = json!(task);
        message["contextId"] = json!("ctx-1");
    }
    json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}})
        .to_string()
}

/// Every configuration, Envoy pinned to `cpus`.
pub fn all(world: &World, cpus: &str) -> Vec<Configuration> {
    let issuer = world.idp.issuer();
    let jwks = world.idp.jwks();
    let token_uri = format!("{}/token", world.idp.addr());
    let one = Workload::bearer("one-token", "/orders", &world.es256_token);
    let rs256 = Workload::bearer("rs256-token", "/orders", &world.rs256_token);
    let pool = Workload::token_pool("pool", "/orders", world.pool.clone());
    let alice = format!("Bearer {}", world.es256_token);
    let a2a =
        Workload::post_json("a2a", "/", &[("authorization", &alice)], &transfer_message(Some(AGENT_TASK)));
    let injector = || native::credential_injector("idp", &token_uri, BROKER, BROKER_SECRET_NAME, &["quotes"]);
    let row = |id, label, kind, spec, workload: &Workload, baseline| Configuration {
        id,
        label,
        kind,
        spec,
        workload: workload.clone(),
        baseline,
        targets: Vec::new(),
        module: Module::Shipped,
        refuses_without_token: None,
        work_stats: Vec::new(),
        counts_idp_calls: false,
        needs_bank_authorization: false,
    };
    let ratio = |anchor, min| Target::Ratio { anchor, min };
    let cpu_above = |anchor, max_us| Target::CpuAbove { anchor, max_us };
    let ce_one_token = Configuration {
        targets: vec![
            ratio("jwt_authn-rbac", 1.0),
            cpu_above("wasm-floor", 1.5),
            Target::ReportCpu { anchor: "wasm-floor-decide" },
        ],
        refuses_without_token: Some(401),
        work_stats: vec!["wasmcustom.baton_ce.allowed", "wasmcustom.baton_ce.cache.hit_local"],
        ..row(
            "ce-one-token",
            "claim-enforcement, one ES256 token, scope rule",
            Kind::Baton,
            listener(cpus).filter("claim_enforcement", world.claim_enforcement(10_000)),
            &one,
            "passthrough",
        )
    };
    vec![
        // Baselines.
        row(
            "passthrough",
            "passthrough (direct_response)",
            Kind::Passthrough,
            listener(cpus),
            &one,
            "passthrough",
        ),
        row(
            "passthrough-pool",
            "passthrough, token pool script",
            Kind::Passthrough,
            listener(cpus),
            &pool,
            "passthrough-pool",
        ),
        row(
            "passthrough-a2a",
            "passthrough, A2A message read whole (buffer filter)",
            Kind::Passthrough,
            a2a_anchor(cpus),
            &a2a,
            "passthrough-a2a",
        ),
        // What any wasm filter pays.
        row(
            "wasm-floor",
            "proxy-wasm filter doing nothing",
            Kind::Floor,
            listener(cpus).filter("wasm_floor", json!("empty")),
            &one,
            "passthrough",
        ),
        row(
            "wasm-floor-swap",
            "proxy-wasm filter replacing authorization",
            Kind::Floor,
            listener(cpus).filter("wasm_floor", json!("swap-credential")),
            &one,
            "passthrough",
        ),
        // The host calls of a cached decision, and nothing else.
        Configuration {
            targets: vec![
                Target::Report { anchor: "jwt_authn-rbac" },
                Target::Report { anchor: "jwt_authn-credential_injector" },
                Target::Report { anchor: "wasm-floor-swap" },
            ],
            ..row(
                "wasm-floor-decide",
                "proxy-wasm filter doing the least a cached decision can (header map, clock, token found in a map, one header set)",
                Kind::Floor,
                listener(cpus).filter("wasm_floor", json!("cached-decision")),
                &one,
                "passthrough",
            )
        },
        // The least in-task-auth-code's stored-token path can do in wasm.
        row(
            "wasm-floor-a2a",
            "proxy-wasm filter doing in-task's host calls (message, task lookup, credential, answer)",
            Kind::Floor,
            a2a_listener(cpus).filter("wasm_floor", json!("a2a-stored-token")),
            &a2a,
            "passthrough-a2a",
        ),
        // Envoy's own filters.
        Configuration {
            refuses_without_token: Some(401),
            work_stats: vec!["http.ingress.rbac.allowed", "http.ingress.jwt_authn.jwt_cache_hit"],
            ..row(
                "jwt_authn-rbac",
                "jwt_authn ES256 + RBAC scope, cache on",
                Kind::Native,
                listener(cpus)
                    .native_filter(
                        "envoy.filters.http.jwt_authn",
                        native::jwt_authn(&issuer, AUDIENCE, &jwks, Some(100)),
                    )
                    .native_filter("envoy.filters.http.rbac", native::rbac_scope(SCOPE)),
                &one,
                "passthrough",
            )
        },
        Configuration {
            refuses_without_token: Some(401),
            work_stats: vec!["http.ingress.jwt_authn.allowed", "http.ingress.jwt_authn.jwt_cache_hit"],
            ..row(
                "jwt_authn-pool",
                "jwt_authn ES256, 1000 tokens, cache 2000",
                Kind::Native,
                listener(cpus).native_filter(
                    "envoy.filters.http.jwt_authn",
                    native::jwt_authn(&issuer, AUDIENCE, &jwks, Some(2000)),
                ),
                &pool,
                "passthrough-pool",
            )
        },
        Configuration {
            refuses_without_token: Some(401),
            work_stats: vec!["http.ingress.jwt_authn.allowed"],
            ..row(
                "jwt_authn-cold-es256",
                "jwt_authn ES256, cache off",
                Kind::Native,
                listener(cpus).native_filter(
                    "envoy.filters.http.jwt_authn",
                    native::jwt_authn(&issuer, AUDIENCE, &jwks, None),
                ),
                &one,
                "passthrough",
            )
        },
        Configuration {
            refuses_without_token: Some(401),
            work_stats: vec!["http.ingress.jwt_authn.allowed"],
            ..row(
                "jwt_authn-cold-rs256",
                "jwt_authn RS256, cache off",
                Kind::Native,
                listener(cpus).native_filter(
                    "envoy.filters.http.jwt_authn",
                    native::jwt_authn(&issuer, AUDIENCE, &jwks, None),
                ),
                &rs256,
                "passthrough",
            )
        },
        Configuration {
            work_stats: vec!["http.ingress.credential_injector.injected"],
            counts_idp_calls: true,
            ..row(
                "credential_injector",
                "credential_injector oauth2 client credentials",
                Kind::Native,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .secret(BROKER_SECRET_NAME, mock_idp::DEMO_BROKER_SECRET)
                    .native_filter("envoy.filters.http.credential_injector", injector()),
                &one,
                "passthrough",
            )
        },
        Configuration {
            refuses_without_token: Some(401),
            work_stats: vec![
                "http.ingress.jwt_authn.jwt_cache_hit",
                "http.ingress.credential_injector.injected",
            ],
            counts_idp_calls: true,
            ..row(
                "jwt_authn-credential_injector",
                "jwt_authn (cache on) -> credential_injector",
                Kind::Native,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .secret(BROKER_SECRET_NAME, mock_idp::DEMO_BROKER_SECRET)
                    .native_filter(
                        "envoy.filters.http.jwt_authn",
                        native::jwt_authn(&issuer, AUDIENCE, &jwks, Some(100)),
                    )
                    .native_filter("envoy.filters.http.credential_injector", injector()),
                &one,
                "passthrough",
            )
        },
        // Baton.
        ce_one_token.clone(),
        // The same with the module as cargo built, to show what `wasm-opt
        // -Oz` changes.
        Configuration {
            id: "ce-one-token-as-built",
            label: "claim-enforcement, one token, the module as cargo built (not shipped)",
            targets: vec![Target::Report { anchor: "ce-one-token" }],
            module: Module::AsBuilt,
            ..ce_one_token
        },
        Configuration {
            targets: vec![
                ratio("jwt_authn-pool", 1.0),
                cpu_above("wasm-floor", 1.5),
                Target::ReportCpu { anchor: "wasm-floor-decide" },
            ],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_ce.allowed"],
            ..row(
                "ce-pool",
                "claim-enforcement, 1000 ES256 tokens, warm",
                Kind::Baton,
                listener(cpus).filter("claim_enforcement", world.claim_enforcement(2000)),
                &pool,
                "passthrough-pool",
            )
        },
        Configuration {
            targets: vec![ratio("jwt_authn-cold-es256", 0.7)],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_ce.allowed", "wasmcustom.baton_ce.cache.miss"],
            ..row(
                "ce-cold-es256",
                "claim-enforcement ES256, every token verified",
                Kind::Baton,
                listener(cpus).filter("claim_enforcement", world.claim_enforcement(0)),
                &one,
                "passthrough",
            )
        },
        Configuration {
            targets: vec![Target::Report { anchor: "jwt_authn-cold-rs256" }],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_ce.allowed", "wasmcustom.baton_ce.cache.miss"],
            ..row(
                "ce-cold-rs256",
                "claim-enforcement RS256, every token verified",
                Kind::Baton,
                listener(cpus).filter("claim_enforcement", world.claim_enforcement(0)),
                &rs256,
                "passthrough",
            )
        },
        Configuration {
            targets: vec![
                ratio("wasm-floor-swap", 0.95),
                Target::Report { anchor: "credential_injector" },
                Target::ReportCpu { anchor: "wasm-floor-decide" },
            ],
            work_stats: vec!["wasmcustom.baton_obo.injected", "wasmcustom.baton_obo.cache.hit_local"],
            counts_idp_calls: true,
            ..row(
                "obo-client-credentials",
                "obo-credential-injection, client credentials, cached",
                Kind::Baton,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .filter("obo_credential_injection", world.obo_client_credentials()),
                &one,
                "passthrough",
            )
        },
        Configuration {
            targets: vec![
                ratio("wasm-floor-swap", 0.95),
                Target::Report { anchor: "credential_injector" },
                Target::ReportCpu { anchor: "wasm-floor-decide" },
            ],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_obo.injected", "wasmcustom.baton_obo.cache.hit_local"],
            counts_idp_calls: true,
            ..row(
                "obo-token-exchange",
                "obo-credential-injection, token exchange, cache hit",
                Kind::Baton,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .filter("obo_credential_injection", world.obo_token_exchange()),
                &one,
                "passthrough",
            )
        },
        Configuration {
            targets: vec![cpu_above("passthrough-a2a", 8.0), Target::ReportCpu { anchor: "wasm-floor-a2a" }],
            work_stats: vec!["wasmcustom.baton_itac.tokens_injected"],
            needs_bank_authorization: true,
            ..row(
                "in-task-stored-token",
                "in-task-auth-code, message with a stored token",
                Kind::Baton,
                a2a_listener(cpus)
                    .cluster("bank_idp", world.bank.addr())
                    .filter("in_task_auth_code", world.in_task()),
                &a2a,
                "passthrough-a2a",
            )
        },
        Configuration {
            targets: vec![ratio("jwt_authn-credential_injector", 0.9)],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_ce.cache.hit_local", "wasmcustom.baton_obo.cache.hit_local"],
            counts_idp_calls: true,
            ..row(
                "ce-obo-chain",
                "claim-enforcement -> obo-credential-injection (exchange)",
                Kind::Baton,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .filter("claim_enforcement", world.claim_enforcement(10_000))
                    .filter("obo_credential_injection", world.obo_token_exchange()),
                &one,
                "passthrough",
            )
        },
        Configuration {
            targets: vec![
                ratio("jwt_authn-credential_injector", 0.9),
                Target::Report { anchor: "ce-obo-chain" },
                Target::ReportCpu { anchor: "wasm-floor-decide" },
            ],
            refuses_without_token: Some(401),
            work_stats: vec!["wasmcustom.baton_ce.cache.hit_local", "wasmcustom.baton_obo.cache.hit_local"],
            counts_idp_calls: true,
            ..row(
                "ce-obo-one-pass",
                "enforce-and-exchange: the chain in one pass of one filter",
                Kind::Baton,
                listener(cpus)
                    .cluster("idp", world.idp.addr())
                    .filter("enforce_and_exchange", world.enforce_and_exchange()),
                &one,
                "passthrough",
            )
        },
    ]
}
