//! The official A2A and MCP SDKs (Python `a2a-sdk` and `mcp`, pinned in
//! `requirements.txt`, installed in `.venv-sdk` by `make setup`) as the
//! tests' servers and clients: `agent.py` serves on a free loopback port and
//! logs every request it receives; `client.py` makes one A2A SDK call and
//! prints what the SDK made of the answer; `mcp_server.py` and
//! `mcp_client.py` do the same for MCP.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_harness::workspace_root;
use serde_json::Value;

fn python() -> PathBuf {
    let python = workspace_root().join(".venv-sdk/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup`", python.display());
    python
}

fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/sdk").join(name)
}

/// A server script of the SDK venv on a free loopback port, stopped (by
/// its PID) when dropped.
pub struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    /// Runs `script PORT extra...` and waits until it accepts connections
    /// (another port if the chosen one was taken meanwhile).
    pub fn start(script_name: &str, extra: impl Fn(u16) -> Vec<String>) -> Self {
        for _ in 0..3 {
            let port = baton_harness::free_port().unwrap();
            let child = Command::new(python())
                .arg(script(script_name))
                .arg(port.to_string())
                .args(extra(port))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("{script_name} starts: {e}"));
            let mut server = PythonServer { child, port };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if server.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        panic!("{script_name} did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK agent (`agent.py`), logging what it receives.
pub struct SdkAgent {
    server: PythonServer,
    log: PathBuf,
}

impl SdkAgent {
    /// Starts the agent and waits until it accepts connections.
    pub fn start() -> Self {
        let log = std::env::temp_dir().join(format!(
            "baton-a2a-agent-{}-{}.jsonl",
            std::process::id(),
            baton_harness::free_port().unwrap()
        ));
        let _ = std::fs::remove_file(&log);
        let path = log.display().to_string();
        let server = PythonServer::start("agent.py", |_| vec![path.clone()]);
        SdkAgent { server, log }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request the agent received so far: method, path, headers
    /// (lower-case names, each a list of values), body.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The JSON-RPC requests (not the card).
    pub fn calls(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|request| request["method"] == "POST").collect()
    }
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One header of a logged request (its only value).
pub fn header(request: &Value, name: &str) -> Option<String> {
    let values = request["headers"][name].as_array()?;
    assert_eq!(values.len(), 1, "{name} sent {} times", values.len());
    values[0].as_str().map(str::to_string)
}

/// The JSON body of a logged request.
pub fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap()
}

/// One A2A SDK client call (see `client.py`): what the SDK made of the
/// answer.
pub fn client(spec: &Value) -> Value {
    run_client("client.py", spec)
}

/// One A2A SDK call (`op` and the rest of `spec`) to the gateway at `url`,
/// with `token` as the user's bearer (none: anonymous).
pub fn a2a_call(url: &str, token: Option<String>, version: &str, stream: bool, spec: Value) -> Value {
    let mut spec = spec;
    spec["url"] = serde_json::json!(url);
    spec["token"] = serde_json::json!(token);
    spec["version"] = serde_json::json!(version);
    spec["stream"] = serde_json::json!(stream);
    client(&spec)
}

/// One MCP SDK tool call (see `mcp_client.py`).
pub fn mcp_client(spec: &Value) -> Value {
    run_client("mcp_client.py", spec)
}

fn run_client(script_name: &str, spec: &Value) -> Value {
    let output = Command::new(python())
        .arg(script(script_name))
        .arg(spec.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("the SDK client runs");
    assert!(output.status.success(), "{script_name} failed for {spec}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("client.py printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}
