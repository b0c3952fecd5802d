//! The figures beside the table: module sizes after `wasm-opt -Oz`, Envoy's
//! memory with and without the filters, and its start-to-ready time.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec, wasm_file};
use serde_json::{Value, json};

/// The filters as built.
pub const FILTERS: [&str; 3] = ["claim_enforcement", "obo_credential_injection", "in_task_auth_code"];
/// The size each module must stay under after `wasm-opt -Oz`.
pub const SIZE_TARGET_BYTES: u64 = 400 * 1024;

/// One module's size.
#[derive(Debug, Clone)]
pub struct WasmSize {
    /// File stem.
    pub name: &'static str,
    /// As built by cargo.
    pub built: u64,
    /// After `wasm-opt -Oz`, when wasm-opt is installed.
    pub optimized: Option<u64>,
}

/// Sizes of the built modules, optimised copies written to `scratch`.
pub fn wasm_sizes(scratch: &Path) -> Vec<WasmSize> {
    FILTERS
        .iter()
        .map(|name| {
            let input = wasm_file(name);
            let built = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
            let output = scratch.join(format!("{name}.oz.wasm"));
            let optimized = baton_oci::optimize(&input, &output)
                .ok()
                .filter(|ran| *ran)
                .and_then(|_| std::fs::metadata(&output).ok())
                .map(|m| m.len());
            WasmSize { name, built, optimized }
        })
        .collect()
}

/// Envoy memory and start time, without and with all three filters.
#[derive(Debug, Clone)]
pub struct EnvoyFootprint {
    /// What was loaded.
    pub label: &'static str,
    /// RSS after start and a few requests, KiB.
    pub rss_kib: u64,
    /// Median start-to-ready time over the starts.
    pub startup: Duration,
}

/// Starts each spec `starts` times, measuring time to ready and RSS.
pub fn footprints(specs: &[(&'static str, EnvoySpec)], starts: usize) -> Result<Vec<EnvoyFootprint>, String> {
    let mut out = Vec::new();
    for (label, spec) in specs {
        let mut times = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..starts {
            let started = Instant::now();
            let envoy = Envoy::start(spec).map_err(|e| format!("{label}: {e}"))?;
            times.push(started.elapsed());
            for _ in 0..100 {
                envoy.get("/orders", &[]);
            }
            rss.push(envoy.rss_kib().unwrap_or(0));
        }
        times.sort();
        rss.sort();
        out.push(EnvoyFootprint { label, rss_kib: rss[rss.len() / 2], startup: times[times.len() / 2] });
    }
    Ok(out)
}

/// The sizes as JSON.
pub fn sizes_json(sizes: &[WasmSize]) -> Value {
    Value::Array(
        sizes
            .iter()
            .map(|size| {
                json!({"module": format!("{}.wasm", size.name), "built_bytes": size.built,
                       "wasm_opt_oz_bytes": size.optimized,
                       "within_target": size.optimized.map(|bytes| bytes <= SIZE_TARGET_BYTES)})
            })
            .collect(),
    )
}

/// The footprints as JSON.
pub fn footprints_json(footprints: &[EnvoyFootprint]) -> Value {
    Value::Array(
        footprints
            .iter()
            .map(|f| json!({"envoy": f.label, "rss_kib": f.rss_kib, "start_to_ready_ms": f.startup.as_millis() as u64}))
            .collect(),
    )
}
