//! Turning rounds into the table: medians, and ratios taken round by round
//! (a configuration against its baseline and anchor measured minutes apart
//! at most), then their median.

use serde_json::{Value, json};

use crate::configs::{Kind, Target};
use crate::run::Running;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Configuration id.
    pub id: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Row kind.
    pub kind: Kind,
    /// Median requests per second.
    pub rps: f64,
    /// Median p50 latency, µs.
    pub p50_us: u64,
    /// Median p99 latency, µs.
    pub p99_us: u64,
    /// Median Envoy CPU time per request, µs.
    pub cpu_us: f64,
    /// Median ratio to the passthrough row with the same workload.
    pub vs_passthrough: f64,
    /// Each target with what was measured against its anchor: the median
    /// paired throughput ratio, or for [`Target::CpuAbove`] and
    /// [`Target::ReportCpu`] the median paired Envoy CPU difference in µs.
    pub targets: Vec<(Target, f64)>,
    /// Token-endpoint calls per 10,000 requests (cached configurations).
    pub idp_calls_per_10k: Option<f64>,
    /// Token-endpoint calls in total (setup and rounds).
    pub idp_calls: Option<u64>,
    /// Every request's rate, per round.
    pub rounds_rps: Vec<f64>,
}

/// Whether `measured` meets `target` (`None`: a figure only reported).
pub fn meets(target: Target, measured: f64) -> Option<bool> {
    match target {
        Target::Ratio { min, .. } => Some(measured >= min),
        Target::CpuAbove { max_us, .. } => Some(measured <= max_us),
        Target::Report { .. } | Target::ReportCpu { .. } => None,
    }
}

impl Row {
    /// Whether every target is met (`None`: the row has none to meet).
    pub fn met(&self) -> Option<bool> {
        let verdicts: Vec<bool> =
            self.targets.iter().filter_map(|(target, got)| meets(*target, *got)).collect();
        (!verdicts.is_empty()).then(|| verdicts.iter().all(|met| *met))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rates(running: &Running) -> Vec<f64> {
    running.rounds.iter().map(|round| round.requests_per_sec).collect()
}

/// Median over rounds of `a / b`, round by round.
fn paired_ratio(a: &Running, b: &Running) -> f64 {
    median(a.rounds.iter().zip(&b.rounds).map(|(x, y)| x.requests_per_sec / y.requests_per_sec).collect())
}

/// Median over rounds of `a`'s Envoy CPU per request minus `b`'s, µs.
fn paired_cpu_above(a: &Running, b: &Running) -> f64 {
    median(
        a.rounds
            .iter()
            .zip(&b.rounds)
            .map(|(x, y)| (x.envoy_cpu_ns_per_request as f64 - y.envoy_cpu_ns_per_request as f64) / 1000.0)
            .collect(),
    )
}

/// The rows, in configuration order.
pub fn rows(all: &[Running]) -> Vec<Row> {
    let find = |id: &str| all.iter().find(|running| running.config.id == id);
    all.iter()
        .map(|running| {
            let config = &running.config;
            let vs_passthrough =
                find(config.baseline).map(|base| paired_ratio(running, base)).unwrap_or(f64::NAN);
            let targets = config
                .targets
                .iter()
                .filter_map(|target| {
                    let anchor = find(target.anchor())?;
                    Some(match target {
                        Target::CpuAbove { .. } | Target::ReportCpu { .. } => {
                            (*target, paired_cpu_above(running, anchor))
                        }
                        Target::Ratio { .. } | Target::Report { .. } => {
                            (*target, paired_ratio(running, anchor))
                        }
                    })
                })
                .collect();
            let total_requests: u64 =
                running.setup_requests + running.rounds.iter().map(|round| round.requests).sum::<u64>();
            let idp_calls =
                config.counts_idp_calls.then_some(running.setup_idp_calls + running.run_idp_calls);
            Row {
                id: config.id,
                label: config.label,
                kind: config.kind,
                rps: median(rates(running)),
                p50_us: median(running.rounds.iter().map(|r| r.p50_us as f64).collect()) as u64,
                p99_us: median(running.rounds.iter().map(|r| r.p99_us as f64).collect()) as u64,
                cpu_us: median(
                    running.rounds.iter().map(|r| r.envoy_cpu_ns_per_request as f64 / 1000.0).collect(),
                ),
                vs_passthrough,
                targets,
                idp_calls_per_10k: idp_calls
                    .map(|calls| calls as f64 * 10_000.0 / total_requests.max(1) as f64),
                idp_calls,
                rounds_rps: rates(running),
            }
        })
        .collect()
}

fn latency(us: u64) -> String {
    if us >= 10_000 { format!("{:.1}ms", us as f64 / 1000.0) } else { format!("{:.2}ms", us as f64 / 1000.0) }
}

/// The table as printed (Markdown, so the closing note can paste it).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| configuration | req/s | p50 | p99 | Envoy CPU/req | vs passthrough | vs anchor | target |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
    for row in rows {
        let anchor: Vec<String> = row.targets.iter().map(|(target, got)| measured(*target, *got)).collect();
        let target: Vec<String> = row
            .targets
            .iter()
            .filter_map(|(target, got)| {
                let verdict = if meets(*target, *got)? { "met" } else { "MISSED" };
                Some(format!("{} {verdict}", bound(*target)?))
            })
            .collect();
        let (anchor, target) = (anchor.join("; "), target.join("; "));
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.1}µs | {:.2} | {} | {} |\n",
            row.label,
            row.rps,
            latency(row.p50_us),
            latency(row.p99_us),
            row.cpu_us,
            row.vs_passthrough,
            anchor,
            target
        ));
    }
    out
}

/// What was measured against `target`'s anchor, as the table shows it.
fn measured(target: Target, got: f64) -> String {
    match target {
        Target::CpuAbove { anchor, .. } | Target::ReportCpu { anchor } => {
            format!("{got:+.1}µs CPU vs {anchor}")
        }
        Target::Ratio { anchor, .. } | Target::Report { anchor } => format!("{got:.2}x {anchor}"),
    }
}

/// The bound `target` sets, as the table shows it.
fn bound(target: Target) -> Option<String> {
    match target {
        Target::Ratio { min, .. } => Some(format!("≥ {min:.2}x")),
        Target::CpuAbove { max_us, .. } => Some(format!("≤ +{max_us:.1}µs")),
        Target::Report { .. } | Target::ReportCpu { .. } => None,
    }
}

/// The rows as JSON.
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                json!({
                    "id": row.id,
                    "label": row.label,
                    "kind": match row.kind { Kind::Passthrough => "passthrough", Kind::Floor => "floor", Kind::Native => "native", Kind::Baton => "baton" },
                    "requests_per_sec": row.rps.round(),
                    "rounds_requests_per_sec": row.rounds_rps.iter().map(|r| r.round()).collect::<Vec<_>>(),
                    "p50_us": row.p50_us,
                    "p99_us": row.p99_us,
                    "envoy_cpu_us_per_request": round3(row.cpu_us),
                    "vs_passthrough": round3(row.vs_passthrough),
                    "targets": row.targets.iter().map(|(target, got)| target_json(*target, *got)).collect::<Vec<_>>(),
                    "met": row.met(),
                    "idp_calls": row.idp_calls,
                    "idp_calls_per_10k_requests": row.idp_calls_per_10k.map(round3),
                })
            })
            .collect(),
    )
}

fn target_json(target: Target, got: f64) -> Value {
    let (kind, bound) = match target {
        Target::Ratio { min, .. } => ("throughput_ratio_at_least", Some(min)),
        Target::CpuAbove { max_us, .. } => ("envoy_cpu_us_above_at_most", Some(max_us)),
        Target::Report { .. } => ("throughput_ratio_reported", None),
        Target::ReportCpu { .. } => ("envoy_cpu_us_above_reported", None),
    };
    json!({"anchor": target.anchor(), "kind": kind, "bound": bound, "measured": round3(got), "met": meets(target, got)})
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn latencies_read_in_milliseconds() {
        assert_eq!(latency(380), "0.38ms");
        assert_eq!(latency(12_345), "12.3ms");
    }
}
