//! The official A2A SDK (Python `a2a-sdk`, pinned in `requirements.txt`,
//! installed in `.venv-sdk` by `make setup`) as the tests' agent and client:
//! `agent.py` serves on a free loopback port and logs every request it
//! receives; `client.py` makes one SDK call and prints what the SDK made of
//! the answer.

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
    workspace_root().join("tests/a2a_sdk").join(name)
}

/// The SDK agent, stopped (by its PID) when dropped.
pub struct SdkAgent {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl SdkAgent {
    /// Starts the agent on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        for _ in 0..3 {
            let port = baton_harness::free_port().unwrap();
            let log =
                std::env::temp_dir().join(format!("baton-a2a-agent-{}-{port}.jsonl", std::process::id()));
            let _ = std::fs::remove_file(&log);
            let child = Command::new(python())
                .arg(script("agent.py"))
                .arg(port.to_string())
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the SDK agent starts");
            let mut agent = SdkAgent { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return agent;
                }
                if agent.child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.child.kill();
        }
        panic!("the SDK agent did not start");
    }

    pub fn port(&self) -> u16 {
        self.port
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// One SDK client call (see `client.py`): what the SDK made of the answer.
pub fn client(spec: &Value) -> Value {
    let output = Command::new(python())
        .arg(script("client.py"))
        .arg(spec.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("the SDK client runs");
    assert!(output.status.success(), "client.py failed for {spec}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("client.py printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}
