//! The figures beside the table: the modules that ship (`wasm-opt -Oz`)
//! and their sizes, Envoy's start-to-ready time per module, its memory per
//! worker, and what a verified-token cache entry costs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec, wasm_file};
use http_kit::ClientRequest;
use serde_json::{Value, json};

/// The filters as built (the last, both engines in one pass, embeds two
/// of the others).
pub const FILTERS: [&str; 4] =
    ["claim_enforcement", "obo_credential_injection", "in_task_auth_code", "enforce_and_exchange"];
/// The size each module must stay under after `wasm-opt -Oz`.
pub const SIZE_TARGET_BYTES: u64 = 400 * 1024;
/// Worker counts memory is measured at.
pub const WORKERS: [u32; 3] = [1, 2, 4];

/// One module's size.
#[derive(Debug, Clone)]
pub struct WasmSize {
    /// File stem.
    pub name: &'static str,
    /// As built by cargo.
    pub built: u64,
    /// After `wasm-opt -Oz`: what `make oci` ships and the bench loads.
    pub shipped: u64,
}

/// Writes the modules as shipped (`wasm-opt -Oz`, the call `make oci`
/// makes) to `dir`, with the floor filter as built beside them (an anchor,
/// not a Baton module), and returns their sizes.
pub fn ship_modules(dir: &Path) -> Result<Vec<WasmSize>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let floor = wasm_file("wasm_floor");
    std::fs::copy(&floor, dir.join("wasm_floor.wasm")).map_err(|e| format!("{}: {e}", floor.display()))?;
    FILTERS
        .iter()
        .map(|name| {
            let input = wasm_file(name);
            let output = dir.join(format!("{name}.wasm"));
            match baton_oci::optimize(&input, &output) {
                Ok(true) => {}
                Ok(false) => {
                    return Err("wasm-opt is not installed (make bench-tools installs binaryen)".into());
                }
                Err(error) => return Err(error.to_string()),
            }
            let size = |path: &Path| {
                std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("{}: {e}", path.display()))
            };
            Ok(WasmSize { name, built: size(&input)?, shipped: size(&output)? })
        })
        .collect()
}

/// Envoy's start-up and memory with one set of filters.
#[derive(Debug, Clone)]
pub struct EnvoyFootprint {
    /// What was loaded.
    pub label: &'static str,
    /// Median start-to-ready time with one worker.
    pub startup: Duration,
    /// RSS after start and 100 requests, KiB, per worker count.
    pub rss_kib: Vec<(u32, u64)>,
}

/// Starts each spec at every worker count in [`WORKERS`] (`starts` times
/// with one worker, for the start-up median), measuring time to ready and
/// RSS.
pub fn footprints(specs: &[(&'static str, EnvoySpec)], starts: usize) -> Result<Vec<EnvoyFootprint>, String> {
    let mut out = Vec::new();
    for (label, spec) in specs {
        let mut times = Vec::new();
        let mut rss_kib = Vec::new();
        for workers in WORKERS {
            let mut rss = Vec::new();
            for _ in 0..if workers == 1 { starts } else { 1 } {
                let started = Instant::now();
                let envoy =
                    Envoy::start(&spec.clone().concurrency(workers)).map_err(|e| format!("{label}: {e}"))?;
                if workers == 1 {
                    times.push(started.elapsed());
                }
                for _ in 0..100 {
                    envoy.get("/orders", &[]);
                }
                rss.push(envoy.rss_kib().unwrap_or(0));
            }
            rss.sort();
            rss_kib.push((workers, rss[rss.len() / 2]));
        }
        times.sort();
        out.push(EnvoyFootprint { label, startup: times[times.len() / 2], rss_kib });
    }
    Ok(out)
}

/// What verified tokens cost in memory: RSS before and after `tokens`
/// distinct tokens were verified and cached by `spec`'s claim-enforcement.
#[derive(Debug, Clone, Copy)]
pub struct CacheCost {
    /// Distinct tokens sent.
    pub entries: usize,
    /// RSS growth per token, bytes.
    pub bytes_per_entry: u64,
}

/// Sends each token once (after 100 requests with the first), and divides
/// the RSS growth by their number.
pub fn cache_cost(spec: &EnvoySpec, tokens: &[String]) -> Result<CacheCost, String> {
    let envoy = Envoy::start(spec).map_err(|e| format!("cache cost: {e}"))?;
    let bearer =
        |token: &str| ClientRequest::get("/orders").header("authorization", &format!("Bearer {token}"));
    let first = tokens.first().ok_or("cache cost: no tokens")?;
    for _ in 0..100 {
        envoy.send(&bearer(first));
    }
    let before = envoy.rss_kib().unwrap_or(0);
    for token in tokens {
        let status = envoy.send(&bearer(token)).status;
        if status != 200 {
            return Err(format!("cache cost: a pool token got {status}"));
        }
    }
    let after = envoy.rss_kib().unwrap_or(0);
    Ok(CacheCost {
        entries: tokens.len(),
        bytes_per_entry: after.saturating_sub(before) * 1024 / tokens.len().max(1) as u64,
    })
}

/// The sizes as JSON.
pub fn sizes_json(sizes: &[WasmSize]) -> Value {
    Value::Array(
        sizes
            .iter()
            .map(|size| {
                json!({"module": format!("{}.wasm", size.name), "built_bytes": size.built,
                       "wasm_opt_oz_bytes": size.shipped, "within_target": size.shipped <= SIZE_TARGET_BYTES})
            })
            .collect(),
    )
}

/// The footprints as JSON.
pub fn footprints_json(footprints: &[EnvoyFootprint]) -> Value {
    Value::Array(
        footprints
            .iter()
            .map(|f| {
                json!({"envoy": f.label, "start_to_ready_ms": f.startup.as_millis() as u64,
                       "rss_kib": f.rss_kib.iter().map(|(workers, kib)| json!({"workers": workers, "kib": kib})).collect::<Vec<_>>()})
            })
            .collect(),
    )
}

/// Where the shipped modules go under the bench's scratch folder.
pub fn shipped_dir(scratch: &Path) -> PathBuf {
    scratch.join("shipped")
}
