//! A running Envoy process.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_kit::{ClientRequest, ClientResponse};
use serde_json::Value;

use crate::config::EnvoySpec;
use crate::paths::{envoy_binary, temp_dir};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a Baton count may take to reach Envoy's stats: the filters
/// add counts up in memory and hand them over at their next tick, which
/// comes within 100 ms of a count (`filter-kit`'s `COUNTER_FLUSH`); the
/// rest is margin for a loaded machine.
pub const COUNTER_FLUSH_WAIT: Duration = Duration::from_millis(300);

/// An Envoy started for a test; killed (by PID) and cleaned up on drop.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
}

/// How to run the Envoy process.
pub(crate) struct Launch<'a> {
    pub(crate) workers: u32,
    pub(crate) env: &'a [(String, String)],
    pub(crate) log_level: &'a str,
    pub(crate) cpus: Option<&'a str>,
    /// `--component-log-level` as given; `None`: the filters' own lines at
    /// debug when the level is info.
    pub(crate) component_levels: Option<&'a str>,
}

impl Envoy {
    /// Starts Envoy and waits until it is ready and its listener is bound.
    pub fn start(spec: &EnvoySpec) -> Result<Envoy, String> {
        let dir = temp_dir("envoy")?;
        let config_path = dir.join("envoy.json");
        let bootstrap = spec.bootstrap(&dir);
        fs::write(&config_path, bootstrap.to_string()).map_err(|e| format!("writing config: {e}"))?;
        let launch = Launch {
            workers: spec.workers(),
            env: spec.environment(),
            log_level: spec.level(),
            cpus: spec.cpu_list(),
            component_levels: None,
        };
        Self::start_in(dir, &config_path, &std::env::temp_dir(), &launch)
    }

    /// Starts Envoy on a configuration file as shipped (e.g. from
    /// `envoy-configs/`), with `workdir` as its working directory.
    pub fn start_file(config_path: &Path, workdir: &Path, workers: u32) -> Result<Envoy, String> {
        let dir = temp_dir("envoy")?;
        let launch = Launch { workers, env: &[], log_level: "info", cpus: None, component_levels: None };
        Self::start_in(dir, config_path, workdir, &launch)
    }

    /// As [`Envoy::start_file`], with environment variables for Envoy (and,
    /// through `vm_config.environment_variables`, for the filters).
    pub fn start_file_with_env(
        config_path: &Path,
        workdir: &Path,
        workers: u32,
        env: &[(String, String)],
    ) -> Result<Envoy, String> {
        let dir = temp_dir("envoy")?;
        let launch = Launch { workers, env, log_level: "info", cpus: None, component_levels: None };
        Self::start_in(dir, config_path, workdir, &launch)
    }

    pub(crate) fn start_in(
        dir: PathBuf,
        config_path: &Path,
        workdir: &Path,
        launch: &Launch,
    ) -> Result<Envoy, String> {
        let binary = envoy_binary();
        if !binary.exists() {
            return Err(format!("no Envoy at {} (run `make setup`, or set BATON_ENVOY)", binary.display()));
        }
        let log = fs::File::create(dir.join("envoy.log")).map_err(|e| format!("log file: {e}"))?;
        let admin_file = dir.join("admin.txt");
        // `taskset` execs Envoy, so the child's PID is Envoy's either way.
        let mut command = match launch.cpus {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", cpus]).arg(&binary);
                taskset
            }
            None => Command::new(&binary),
        };
        // At `info`, the filters' own lines (wasm component) go down to debug.
        let wasm_level = if launch.log_level == "info" { "debug" } else { launch.log_level };
        let component_levels =
            launch.component_levels.map_or_else(|| format!("wasm:{wasm_level}"), str::to_string);
        let child = command
            .envs(launch.env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
            .current_dir(workdir)
            .arg("-c")
            .arg(config_path)
            .args(["--concurrency", &launch.workers.to_string()])
            .args(["--disable-hot-restart", "-l", launch.log_level])
            .args(["--component-log-level", &component_levels])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut envoy = Envoy { child, dir, admin: unspecified(), listener: unspecified() };
        envoy.wait_ready(&admin_file)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "Envoy exited with {status} before it was ready:\n{}",
                    self.log_tail(40)
                ));
            }
            if let Some(admin) = fs::read_to_string(admin_file).ok().and_then(|text| text.trim().parse().ok())
            {
                self.admin = admin;
                if let Some(listener) = self.ready_listener() {
                    self.listener = listener;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("Envoy not ready after {START_TIMEOUT:?}:\n{}", self.log_tail(40)))
    }

    fn ready_listener(&self) -> Option<SocketAddr> {
        let ready = http_kit::send(self.admin, &ClientRequest::get("/ready"), Duration::from_secs(2)).ok()?;
        if ready.status != 200 {
            return None;
        }
        let listeners = self.admin_get("/listeners?format=json").ok()?.json().ok()?;
        let address = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let port = u16::try_from(address["port_value"].as_u64()?).ok()?;
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the Envoy process in KiB (`VmRSS`), if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Sends a request through the listener.
    pub fn send(&self, request: &ClientRequest) -> ClientResponse {
        match http_kit::send(self.listener, request, REQUEST_TIMEOUT) {
            Ok(response) => response,
            Err(error) => ClientResponse { status: 0, headers: vec![], body: error.to_string().into_bytes() },
        }
    }

    /// `GET path` with extra headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> ClientResponse {
        let mut request = ClientRequest::get(path);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.send(&request)
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub fn get_with_token(&self, path: &str, token: &str) -> ClientResponse {
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
    }

    /// A request to the admin interface.
    pub fn admin_get(&self, path: &str) -> Result<ClientResponse, String> {
        http_kit::send(self.admin, &ClientRequest::get(path), Duration::from_secs(5))
            .map_err(|e| e.to_string())
    }

    /// A counter or gauge by its full stat name (0 when absent). A Baton
    /// counter is read after [`COUNTER_FLUSH_WAIT`], so that every count
    /// made before the call is in it.
    pub fn stat(&self, name: &str) -> u64 {
        if name.starts_with("wasmcustom.") {
            std::thread::sleep(COUNTER_FLUSH_WAIT);
        }
        let Ok(response) = self.admin_get("/stats?format=json") else {
            return 0;
        };
        let Ok(stats) = response.json() else {
            return 0;
        };
        stats["stats"]
            .as_array()
            .and_then(|stats| stats.iter().find(|stat| stat["name"] == name))
            .and_then(|stat| stat["value"].as_u64())
            .unwrap_or(0)
    }

    /// A Baton counter: `counter("baton_ce.allowed")` reads
    /// `wasmcustom.baton_ce.allowed`.
    pub fn counter(&self, name: &str) -> u64 {
        self.stat(&format!("wasmcustom.{name}"))
    }

    /// Everything Envoy logged so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Baton's own log lines (wasm log lines), message part only.
    pub fn filter_logs(&self) -> Vec<String> {
        self.logs()
            .lines()
            .filter_map(|line| line.split_once("baton ").map(|(_, rest)| rest.to_string()))
            .filter(|line| {
                line.starts_with("claim-enforcement:")
                    || line.starts_with("obo-")
                    || line.starts_with("in-task")
            })
            .collect()
    }

    fn log_tail(&self, lines: usize) -> String {
        let logs = self.logs();
        let all: Vec<&str> = logs.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `check` holds, up to `timeout`; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, mut check: impl FnMut(&Envoy) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("BATON_KEEP_ENVOY_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs `envoy --mode validate -c path` (which loads the wasm and runs the
/// filter's `on_configure`). Ok with Envoy's output, or Err with it.
pub fn validate_config(path: &Path, workdir: &Path, env: &[(&str, &str)]) -> Result<String, String> {
    let output = Command::new(envoy_binary())
        .envs(env.iter().copied())
        .args(["--mode", "validate", "--disable-hot-restart", "-l", "info", "-c"])
        .arg(path)
        .current_dir(workdir)
        .output()
        .map_err(|e| format!("running envoy: {e}"))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(text) } else { Err(text) }
}

/// Runs `envoy --mode validate` on the bootstrap of `spec`.
pub fn validate_spec(spec: &EnvoySpec) -> Result<String, String> {
    let dir = temp_dir("validate")?;
    let path = dir.join("envoy.json");
    fs::write(&path, spec.bootstrap(&dir).to_string()).map_err(|e| format!("writing config: {e}"))?;
    let env: Vec<(&str, &str)> = spec.environment().iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let result = validate_config(&path, &dir, &env);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The JSON of a response body, or `Null`.
pub fn body_json(response: &ClientResponse) -> Value {
    response.json().unwrap_or(Value::Null)
}
