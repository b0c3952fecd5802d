//! The load generator: `wrk -t1 -c10 --latency`, pinned to its own CPU,
//! with a generated Lua script that reports exact figures as one JSON line.
//!
//! A script that only defines `done` costs nothing per request; a pool of
//! tokens needs a `request` function, which does cost the client, so a pool
//! workload is compared with passthrough driven by the same script.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// What each request looks like.
#[derive(Debug, Clone)]
pub struct Workload {
    /// A short name, used for the script file.
    pub name: String,
    /// `GET` or `POST`.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers sent on every request.
    pub headers: Vec<(String, String)>,
    /// Request body (with `POST`).
    pub body: Option<String>,
    /// Bearer tokens sent round-robin, one per request (empty: none).
    pub token_pool: Vec<String>,
}

impl Workload {
    /// `GET path` with fixed headers.
    pub fn get(name: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        Workload {
            name: name.to_string(),
            method: "GET".to_string(),
            path: path.to_string(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: None,
            token_pool: Vec::new(),
        }
    }

    /// `GET path` with one bearer token on every request.
    pub fn bearer(name: &str, path: &str, token: &str) -> Self {
        Self::get(name, path, &[("authorization", &format!("Bearer {token}"))])
    }

    /// `GET path` cycling through `tokens`, one per request.
    pub fn token_pool(name: &str, path: &str, tokens: Vec<String>) -> Self {
        Workload { token_pool: tokens, ..Self::get(name, path, &[]) }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(name: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Self {
        let mut workload = Self::get(name, path, headers);
        workload.method = "POST".to_string();
        workload.headers.push(("content-type".to_string(), "application/json".to_string()));
        workload.body = Some(body.to_string());
        workload
    }

    /// Writes the Lua script (and the token list) into `dir`.
    fn write_script(&self, dir: &Path) -> Result<PathBuf, String> {
        let mut lua = String::new();
        lua.push_str(&format!("wrk.method = {}\n", lua_string(&self.method)));
        for (name, value) in &self.headers {
            lua.push_str(&format!("wrk.headers[{}] = {}\n", lua_string(name), lua_string(value)));
        }
        if let Some(body) = &self.body {
            lua.push_str(&format!("wrk.body = {}\n", lua_string(body)));
        }
        if !self.token_pool.is_empty() {
            let list = dir.join(format!("{}.tokens", self.name));
            fs::write(&list, self.token_pool.join("\n")).map_err(|e| format!("writing tokens: {e}"))?;
            lua.push_str(&format!(
                r#"local tokens = {{}}
for line in io.lines({}) do tokens[#tokens + 1] = "Bearer " .. line end
local next_token = 0
request = function()
  next_token = next_token % #tokens + 1
  wrk.headers["authorization"] = tokens[next_token]
  return wrk.format()
end
"#,
                lua_string(&list.to_string_lossy())
            ));
        }
        lua.push_str(DONE);
        let script = dir.join(format!("{}.lua", self.name));
        fs::write(&script, lua).map_err(|e| format!("writing script: {e}"))?;
        Ok(script)
    }
}

/// Prints the run's figures as one line the bench parses (latency in µs).
const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BATON_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"#;

fn lua_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Envoy CPU time per request, ns (filled in by the caller).
    pub envoy_cpu_ns_per_request: u64,
}

/// How wrk is run.
#[derive(Debug, Clone)]
pub struct Wrk {
    /// CPUs wrk is pinned to (`taskset -c`).
    pub cpus: String,
    /// Connections.
    pub connections: u32,
    /// Where scripts go.
    pub dir: PathBuf,
}

impl Wrk {
    /// Runs `workload` against `addr` for `duration`. Any non-2xx answer or
    /// socket error fails the run: a benchmark of refusals measures nothing.
    pub fn run(
        &self,
        addr: SocketAddr,
        workload: &Workload,
        duration: Duration,
    ) -> Result<RunResult, String> {
        let script = workload.write_script(&self.dir)?;
        let output = Command::new("taskset")
            .args(["-c", &self.cpus, "wrk", "-t1", "--latency"])
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{addr}{}", workload.path))
            .output()
            .map_err(|e| format!("running wrk: {e} (is it installed? `make bench` installs it)"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!("wrk failed: {stdout}{}", String::from_utf8_lossy(&output.stderr)));
        }
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("BATON_RESULT "))
            .ok_or_else(|| format!("no result line from wrk:\n{stdout}"))?;
        parse_result(line)
    }
}

fn parse_result(line: &str) -> Result<RunResult, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("wrk result {line:?}: {e}"))?;
    let field = |name: &str| value[name].as_u64().ok_or_else(|| format!("wrk result lacks {name}: {line}"));
    let (requests, duration_us) = (field("requests")?, field("duration_us")?);
    let (status_errors, socket_errors) = (field("status_errors")?, field("socket_errors")?);
    if status_errors > 0 || socket_errors > 0 {
        return Err(format!(
            "{status_errors} non-2xx answers and {socket_errors} socket errors in {requests} requests"
        ));
    }
    if requests == 0 || duration_us == 0 {
        return Err(format!("no requests completed: {line}"));
    }
    Ok(RunResult {
        requests,
        requests_per_sec: requests as f64 * 1e6 / duration_us as f64,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        envoy_cpu_ns_per_request: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_line_gives_rate_and_latency() {
        let line = r#"{"requests":50000,"duration_us":10000000,"p50_us":350,"p99_us":1200,"status_errors":0,"socket_errors":0}"#;
        let result = parse_result(line).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((result.requests, result.p50_us, result.p99_us), (50000, 350, 1200));
        assert!((result.requests_per_sec - 5000.0).abs() < 1e-6);
    }

    #[test]
    fn refusals_fail_the_run() {
        let line = r#"{"requests":50000,"duration_us":10000000,"p50_us":350,"p99_us":1200,"status_errors":3,"socket_errors":0}"#;
        assert!(parse_result(line).unwrap_err().contains("3 non-2xx"));
    }

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}
