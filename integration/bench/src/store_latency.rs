//! What the shared store (etcd, issue 16) adds to obo-credential-injection's
//! requests, measured side by side in one run: the latency of one request
//! at a time, each distinct token sent once per step, the modules that ship,
//! a real etcd (3.4, `make store-tools`) on loopback reached through Envoy
//! callouts.
//!
//! - exchange, no store: a local miss exchanged at the IdP;
//! - exchange, with a store: the same miss, plus the store read (a miss)
//!   and the fleet's claim (a lease, then create-if-absent) before the
//!   IdP; the token's write goes out after the answer;
//! - store hit: another replica's first request for a token the first
//!   replica exchanged: one store read, the value opened, no IdP call;
//! - local hit: that replica's second request for it.
//!
//! store hit - local hit is what one store read adds; exchange with a store
//! - exchange without is what a miss pays for the read and the claim.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec, Etcd, sealing_secret};
use http_kit::ClientRequest;
use serde_json::{Value, json};

use crate::world::World;

/// Distinct tokens per step.
const TOKENS: usize = 200;

/// Median latency of each step (µs).
#[derive(Debug, Clone, Copy)]
pub struct StoreLatency {
    /// Distinct tokens per step.
    pub tokens: usize,
    pub exchange_us: u64,
    pub exchange_with_store_us: u64,
    pub store_hit_us: u64,
    pub local_hit_us: u64,
}

impl StoreLatency {
    /// What one store read adds to a request (µs).
    pub fn read_us(&self) -> i64 {
        self.store_hit_us as i64 - self.local_hit_us as i64
    }

    /// What the read and the claim add to a miss (µs).
    pub fn miss_us(&self) -> i64 {
        self.exchange_with_store_us as i64 - self.exchange_us as i64
    }

    /// The figures, as printed.
    pub fn line(&self) -> String {
        format!(
            "store (etcd on loopback), obo exchange, median of {} requests each: local hit {} us; store hit {} us \
             (+{} us: one etcd read); IdP exchange {} us without a store, {} us with one (+{} us: the read and the \
             fleet's claim, a lease and a create)",
            self.tokens,
            self.local_hit_us,
            self.store_hit_us,
            self.read_us(),
            self.exchange_us,
            self.exchange_with_store_us,
            self.miss_us()
        )
    }

    pub fn json(&self) -> Value {
        json!({"tokens": self.tokens, "local_hit_us": self.local_hit_us, "store_hit_us": self.store_hit_us,
               "exchange_us": self.exchange_us, "exchange_with_store_us": self.exchange_with_store_us,
               "store_read_adds_us": self.read_us(), "store_miss_adds_us": self.miss_us()})
    }
}

/// Runs the four steps (see the module's text).
pub fn measure(world: &World, shipped: &Path, cpus: &str) -> Result<StoreLatency, String> {
    let etcd = Etcd::start()?;
    let mut with_store = world.obo_token_exchange();
    with_store["store"] = json!({"etcd": {"cluster": "etcd", "authority": etcd.addr().to_string(), "timeoutMs": 1000},
                                 "sealingKeys": [{"id": "bench", "secret": sealing_secret()?}],
                                 "currentKey": "bench"});
    let spec = |config: &Value| {
        EnvoySpec::direct_response()
            .log_level("warning")
            .cpus(cpus)
            .wasm_dir(shipped)
            .cluster("idp", world.idp.addr())
            .cluster("etcd", etcd.addr())
            .filter("obo_credential_injection", config.clone())
    };
    let start = |config: &Value| Envoy::start(&spec(config)).map_err(|e| format!("store latency: {e}"));
    let (first, second, alone) =
        (start(&with_store)?, start(&with_store)?, start(&world.obo_token_exchange())?);
    let tokens = &world.pool[..TOKENS.min(world.pool.len())];
    // Each Envoy once with a token no step uses, so no step pays a first
    // request's costs.
    let warm = world.pool.last().ok_or("no tokens")?;
    for envoy in [&first, &second, &alone] {
        timed(envoy, warm)?;
    }

    let exchange_with_store = median(tokens.iter().map(|token| timed(&first, token)))?;
    // The first replica's writes go out after its answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.counter("baton_obo.store.written") < tokens.len() as u64 + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let store_hit = median(tokens.iter().map(|token| timed(&second, token)))?;
    let hits = second.counter("baton_obo.store.hit");
    if hits < tokens.len() as u64 {
        return Err(format!("store latency: {hits} store hits for {} tokens", tokens.len()));
    }
    let local_hit = median(tokens.iter().map(|token| timed(&second, token)))?;
    let exchange = median(tokens.iter().map(|token| timed(&alone, token)))?;
    Ok(StoreLatency {
        tokens: tokens.len(),
        exchange_us: exchange,
        exchange_with_store_us: exchange_with_store,
        store_hit_us: store_hit,
        local_hit_us: local_hit,
    })
}

/// One request with `token` (µs); it must be answered 200.
fn timed(envoy: &Envoy, token: &str) -> Result<u64, String> {
    let request = ClientRequest::get("/orders").header("authorization", &format!("Bearer {token}"));
    let started = Instant::now();
    let status = envoy.send(&request).status;
    let took = started.elapsed().as_micros() as u64;
    if status == 200 { Ok(took) } else { Err(format!("store latency: a request got {status}")) }
}

fn median(samples: impl Iterator<Item = Result<u64, String>>) -> Result<u64, String> {
    let mut samples = samples.collect::<Result<Vec<u64>, String>>()?;
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().ok_or_else(|| "store latency: no samples".to_string())
}
