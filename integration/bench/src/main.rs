//! `make bench`: every Baton filter against Envoy's native filters, side by
//! side in one run, as ratios.
//!
//! Each configuration gets its own Envoy (`--concurrency 1`, pinned to one
//! CPU, a `direct_response` route) and wrk pinned to another CPU. Every
//! configuration is measured once per round, rounds interleaved
//! (A B C ... A B C ...), so drift on a shared machine hits all alike.
//! Results go to `bench/results/` as JSON and SVG; see `bench/README.md`.

mod chart;
mod configs;
mod extras;
mod native;
mod report;
mod run;
mod store_latency;
mod world;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_harness::{EnvoySpec, envoy_binary, workspace_root};
use serde_json::json;

use crate::configs::{Configuration, Module};
use crate::run::Running;
use crate::world::World;
use crate::wrk::Wrk;

#[derive(Debug)]
struct Options {
    seconds: u64,
    rounds: usize,
    only: Vec<String>,
    envoy_cpus: String,
    wrk_cpus: String,
    out: PathBuf,
    extras: bool,
    strict: bool,
}

const USAGE: &str = "usage: baton-bench [--seconds N] [--rounds N] [--only ID,ID] [--envoy-cpus LIST] [--wrk-cpus LIST] [--out DIR] [--no-extras] [--strict]";

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            seconds: 10,
            rounds: 3,
            only: Vec::new(),
            envoy_cpus: "0".to_string(),
            wrk_cpus: "1".to_string(),
            out: workspace_root().join("bench").join("results"),
            extras: true,
            strict: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--seconds" => options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
                "--rounds" => options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
                "--only" => options.only = value()?.split(',').map(String::from).collect(),
                "--envoy-cpus" => options.envoy_cpus = value()?,
                "--wrk-cpus" => options.wrk_cpus = value()?,
                "--out" => options.out = PathBuf::from(value()?),
                "--no-extras" => options.extras = false,
                "--strict" => options.strict = true,
                _ => return Err(USAGE.to_string()),
            }
        }
        if options.rounds == 0 || options.seconds == 0 {
            return Err("--rounds and --seconds must be at least 1".to_string());
        }
        Ok(options)
    }
}

/// The configurations asked for, with the baselines and anchors they are
/// divided by (and the anchors' baselines).
fn selected(all: Vec<Configuration>, only: &[String]) -> Vec<Configuration> {
    if only.is_empty() {
        return all;
    }
    let mut keep: Vec<&str> = only.iter().map(String::as_str).collect();
    for _ in 0..2 {
        let more: Vec<&str> = all
            .iter()
            .filter(|c| keep.contains(&c.id))
            .flat_map(|c| std::iter::once(c.baseline).chain(c.targets.iter().map(|t| t.anchor())))
            .collect();
        keep.extend(more);
    }
    let keep: Vec<String> = keep.into_iter().map(String::from).collect();
    all.into_iter().filter(|c| keep.iter().any(|id| id == c.id)).collect()
}

fn main() -> ExitCode {
    match bench() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a target is missed and `--strict`
/// asks for that to fail the run.
fn bench() -> Result<bool, String> {
    let options = Options::parse()?;
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let scratch = std::env::temp_dir().join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let wrk = Wrk { cpus: options.wrk_cpus.clone(), connections: 10, dir: scratch.clone() };
    let duration = Duration::from_secs(options.seconds);

    let world = World::start()?;
    // Every Baton row loads the modules that ship, but the one that says
    // otherwise.
    let shipped = extras::shipped_dir(&scratch);
    let sizes = extras::ship_modules(&shipped)?;
    let configs: Vec<Configuration> = selected(configs::all(&world, &options.envoy_cpus), &options.only)
        .into_iter()
        .map(|mut config| {
            if config.module == Module::Shipped {
                config.spec = config.spec.wasm_dir(&shipped);
            }
            config
        })
        .collect();
    println!(
        "{} configurations, {} rounds of {}s each; Envoy on CPU {}, wrk on CPU {}",
        configs.len(),
        options.rounds,
        options.seconds,
        options.envoy_cpus,
        options.wrk_cpus
    );
    let mut running: Vec<Running> = Vec::new();
    for config in configs {
        println!("  starting {}", config.id);
        running.push(run::prepare(config, &world, &wrk)?);
    }
    for round in 1..=options.rounds {
        for each in running.iter_mut() {
            let result = run::measure(each, &world, &wrk, duration)?;
            println!(
                "  round {round} {:<32} {:>9.0} req/s  p50 {:>6}us  p99 {:>6}us  Envoy CPU {:>6.1}us/req",
                each.config.id,
                result.requests_per_sec,
                result.p50_us,
                result.p99_us,
                result.envoy_cpu_ns_per_request as f64 / 1000.0
            );
        }
    }
    let rows = report::rows(&running);
    let startups: Vec<(&str, u64)> =
        running.iter().map(|r| (r.config.id, r.startup.as_millis() as u64)).collect();
    drop(running);

    println!("\n{}", report::table(&rows));
    for row in rows.iter().filter(|row| row.idp_calls.is_some()) {
        println!(
            "IdP token calls, {}: {} in total, {:.3} per 10,000 requests",
            row.id,
            row.idp_calls.unwrap_or(0),
            row.idp_calls_per_10k.unwrap_or(0.0)
        );
    }

    let (footprints, cache, store) = if options.extras {
        println!();
        for size in &sizes {
            println!(
                "{}.wasm: {} KiB built, {} KiB shipped (wasm-opt -Oz, {})",
                size.name,
                size.built / 1024,
                size.shipped / 1024,
                if size.shipped <= extras::SIZE_TARGET_BYTES { "within 400 KiB" } else { "OVER 400 KiB" }
            );
        }
        let footprints = extras::footprints(&footprint_specs(&world, &options.envoy_cpus, &shipped), 3)?;
        for footprint in &footprints {
            let rss: Vec<String> = footprint
                .rss_kib
                .iter()
                .map(|(workers, kib)| format!("{} MiB with {workers}", kib / 1024))
                .collect();
            println!(
                "Envoy {}: start to ready {} ms; RSS {}",
                footprint.label,
                footprint.startup.as_millis(),
                rss.join(", ")
            );
        }
        let cache_spec = EnvoySpec::direct_response()
            .log_level("warning")
            .cpus(&options.envoy_cpus)
            .wasm_dir(&shipped)
            .filter("claim_enforcement", world.claim_enforcement(10_000));
        let cache = extras::cache_cost(&cache_spec, &world.pool)?;
        println!(
            "claim-enforcement verified-token cache: {} bytes of Envoy RSS per entry ({} tokens)",
            cache.bytes_per_entry, cache.entries
        );
        let store = store_latency::measure(&world, &shipped, &options.envoy_cpus)?;
        println!("{}", store.line());
        (footprints, Some(cache), Some(store))
    } else {
        (Vec::new(), None, None)
    };

    let all_met = rows.iter().all(|row| row.met() != Some(false))
        && sizes.iter().all(|size| size.shipped <= extras::SIZE_TARGET_BYTES);
    let results = json!({
        "measured_at": baton_token::clock::rfc3339(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        "envoy": envoy_version(),
        "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "cpu_model": cpu_model()},
        "settings": {"seconds": options.seconds, "rounds": options.rounds, "connections": wrk.connections,
                     "envoy_cpus": options.envoy_cpus, "wrk_cpus": options.wrk_cpus, "envoy_concurrency": 1},
        "rows": report::rows_json(&rows),
        "wasm_sizes": extras::sizes_json(&sizes),
        "envoy_footprint": extras::footprints_json(&footprints),
        "verified_token_cache_bytes_per_entry": cache.map(|cost| cost.bytes_per_entry),
        "store_latency": store.map(|store| store.json()),
        "bench_envoy_start_ms": startups.iter().map(|(id, ms)| json!({"id": id, "ms": ms})).collect::<Vec<_>>(),
        "all_targets_met": all_met,
    });
    let partial = !options.only.is_empty();
    let stem = if partial { "partial" } else { "latest" };
    let json_path = options.out.join(format!("{stem}.json"));
    let svg_path = options.out.join(format!("{stem}.svg"));
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    std::fs::write(&svg_path, chart::svg(&rows, "Baton vs Envoy native filters (1 worker)"))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    std::fs::write(options.out.join(format!("{stem}.md")), report::table(&rows))
        .map_err(|e| format!("writing the table: {e}"))?;
    println!("\nresults: {} and {}", json_path.display(), svg_path.display());
    let _ = std::fs::remove_dir_all(&scratch);
    if !all_met {
        println!("some targets are MISSED (see above)");
    }
    Ok(all_met || !options.strict)
}

/// Envoy with no filter, with each Baton module alone, and with all three
/// (the modules that ship).
fn footprint_specs(world: &World, cpus: &str, shipped: &std::path::Path) -> Vec<(&'static str, EnvoySpec)> {
    let base = || {
        EnvoySpec::direct_response()
            .log_level("warning")
            .cpus(cpus)
            .wasm_dir(shipped)
            .cluster("idp", world.idp.addr())
            .cluster("bank_idp", world.bank.addr())
    };
    vec![
        ("without filters", base()),
        ("with claim-enforcement", base().filter("claim_enforcement", world.claim_enforcement(10_000))),
        (
            "with obo-credential-injection",
            base().filter("obo_credential_injection", world.obo_token_exchange()),
        ),
        ("with in-task-auth-code", base().filter("in_task_auth_code", world.in_task())),
        (
            "with all three Baton filters",
            base()
                .filter("claim_enforcement", world.claim_enforcement(10_000))
                .filter("obo_credential_injection", world.obo_token_exchange())
                .filter("in_task_auth_code", world.in_task()),
        ),
    ]
}

fn envoy_version() -> String {
    std::process::Command::new(envoy_binary())
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default()
}
