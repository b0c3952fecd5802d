//! A real etcd (Debian's `etcd-server`, 3.4; `make test-tools` installs it)
//! on loopback, for the tests of Baton's shared store: one member or a
//! cluster, each member on free 127.0.0.1 ports with a temporary data
//! folder, killed by PID and its folder removed on drop.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_kit::{ClientRequest, send};

use crate::shipped::free_port;

/// Where Debian's `etcd-server` puts etcd; `BATON_ETCD` overrides it.
const ETCD_BINARY: &str = "/usr/bin/etcd";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh sealing secret for a filter's `store` section: 32 random bytes,
/// base64.
pub fn sealing_secret() -> Result<String, String> {
    use std::io::Read;
    let mut secret = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut secret))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(STANDARD.encode(secret))
}

/// One etcd member (alone, or one of a cluster).
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    binary: PathBuf,
    dir: PathBuf,
    client: SocketAddr,
    name: String,
    peer_port: u16,
    /// `--initial-cluster`: every member's name and peer URL.
    cluster: String,
}

/// A key and its value, as etcd holds them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

impl Etcd {
    /// Starts a single-member etcd and waits until its JSON gateway
    /// answers.
    pub fn start() -> Result<Etcd, String> {
        Ok(Self::start_cluster(1)?.remove(0))
    }

    /// Starts a cluster of `members` (each on its own ports and data
    /// folder) and waits until every member answers.
    pub fn start_cluster(members: usize) -> Result<Vec<Etcd>, String> {
        let binary = std::env::var_os("BATON_ETCD").map_or_else(|| PathBuf::from(ETCD_BINARY), PathBuf::from);
        if !binary.is_file() {
            return Err(format!(
                "etcd is not installed at {}: install Debian's etcd-server (`make test-tools`, or \
                 `apt-get install etcd-server`), or set BATON_ETCD to an etcd 3.4+ binary",
                binary.display()
            ));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let mut ports = Vec::with_capacity(members);
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut started = Vec::with_capacity(members);
        for (i, (client_port, peer_port)) in ports.into_iter().enumerate() {
            let dir = std::env::temp_dir().join(format!("baton-etcd-{}-{nanos}-m{i}", std::process::id()));
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let client = SocketAddr::from(([127, 0, 0, 1], client_port));
            let name = format!("m{i}");
            let child = spawn(&binary, &dir, client, &name, peer_port, &cluster)?;
            started.push(Etcd {
                child,
                binary: binary.clone(),
                dir,
                client,
                name,
                peer_port,
                cluster: cluster.clone(),
            });
        }
        // Members wait for each other (a quorum) before they answer.
        for member in &mut started {
            member.wait_ready()?;
        }
        Ok(started)
    }

    /// Every key under `prefix` and its value, decoded (a range through
    /// the JSON gateway): what a dump of the store shows.
    pub fn dump(&self, prefix: &str) -> Result<Vec<KeyValue>, String> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let range = serde_json::json!({"key": STANDARD.encode(prefix), "range_end": STANDARD.encode(end)});
        let request = ClientRequest::post("/v3/kv/range", "application/json", range.to_string());
        let answer =
            send(self.addr(), &request, Duration::from_secs(5)).map_err(|e| format!("etcd range: {e}"))?;
        if answer.status != 200 {
            return Err(format!("etcd range answered {}: {}", answer.status, answer.body_str()));
        }
        let body: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| format!("etcd range answer: {e}"))?;
        let decode =
            |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default();
        Ok(body["kvs"]
            .as_array()
            .map(|kvs| kvs.iter().map(|kv| (decode(&kv["key"]), decode(&kv["value"]))).collect())
            .unwrap_or_default())
    }

    /// Where its clients connect (the JSON gateway too).
    pub fn addr(&self) -> SocketAddr {
        self.client
    }

    /// What etcd logged (warnings and errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// Kills it now (a store that goes down); dropping it cleans up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it answering without closing its connections (SIGSTOP, by
    /// PID): a store that is slow or cut off by a partition.
    pub fn freeze(&self) -> Result<(), String> {
        self.signal("-STOP")
    }

    /// Lets a frozen etcd go on (SIGCONT).
    pub fn thaw(&self) -> Result<(), String> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("kill {signal}: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("kill {signal} exited with {status}")) }
    }

    /// Starts it again after [`Etcd::kill`], on the same ports with the
    /// same data (a store that comes back).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.child = spawn(&self.binary, &self.dir, self.client, &self.name, self.peer_port, &self.cluster)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = ClientRequest::post("/v3/kv/range", "application/json", r#"{"key":"AA=="}"#);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited with {status} before it was ready:\n{}", self.log()));
            }
            if send(self.client, &probe, Duration::from_millis(500)).is_ok_and(|answer| answer.status == 200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("etcd was not ready after {START_TIMEOUT:?}:\n{}", self.log()))
    }
}

/// One member, its data in `dir`, logging to `dir/etcd.log` (appended).
fn spawn(
    binary: &Path,
    dir: &Path,
    client: SocketAddr,
    name: &str,
    peer_port: u16,
    cluster: &str,
) -> Result<Child, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .map_err(|e| format!("etcd.log: {e}"))?;
    let client_url = format!("http://{client}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    Command::new(binary)
        .args(["--name", name, "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", cluster, "--initial-cluster-token", "baton-test"])
        .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|err| format!("starting {}: {err}", binary.display()))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // A frozen process is killed all the same; thawing first lets it go.
        let _ = self.thaw();
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
