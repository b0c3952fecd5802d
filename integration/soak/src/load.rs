//! The clients both variants run: users with tokens minted by the IdP,
//! requests in random order, and what each answer was.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "agent-broker";
pub const TARGET_AUDIENCE: &str = "portfolio-agent";

/// The IdP (tokens of 45 s, so exchanges keep happening) and the backend.
pub fn idp_and_backend() -> Result<(MockIdp, EchoBackend), String> {
    let idp = MockIdp::start(MockIdpConfig {
        access_token_ttl: Duration::from_secs(45),
        ..MockIdpConfig::default()
    })
    .map_err(|e| format!("mock IdP: {e}"))?;
    let backend = EchoBackend::start().map_err(|e| format!("echo backend: {e}"))?;
    Ok((idp, backend))
}

/// `count` users (`user-<i>`) and their tokens, valid for an hour.
pub fn users(idp: &MockIdp, count: usize) -> Arc<Vec<(String, String)>> {
    let users = (0..count)
        .map(|i| {
            let sub = format!("user-{i}");
            let mut claims = idp.standard_claims(&sub, AUDIENCE, 3600);
            claims["scope"] = json!("portfolio:read");
            (sub, idp.mint(claims))
        })
        .collect();
    Arc::new(users)
}

/// `clients` threads sending requests to `addr` until `deadline`, each as a
/// user in random order (xorshift), so caches smaller than the user count
/// both hit and evict.
pub fn start_clients(
    clients: usize,
    users: &Arc<Vec<(String, String)>>,
    tally: &Arc<Tally>,
    addr: SocketAddr,
    issuer: &str,
    deadline: Instant,
) -> Vec<thread::JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let (users, tally, issuer) = (Arc::clone(users), Arc::clone(tally), issuer.to_string());
            thread::spawn(move || {
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (client as u64 + 1);
                while Instant::now() < deadline {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let (sub, token) = &users[(state % users.len() as u64) as usize];
                    one_request(addr, &issuer, sub, token, &tally);
                }
            })
        })
        .collect()
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub exchanged: AtomicU64,
    pub unavailable: AtomicU64,
    /// A 200 whose upstream token was not the right exchanged one.
    pub wrong_token: AtomicU64,
    /// Any other status, or an unreadable answer.
    pub unexpected: AtomicU64,
    /// No answer at all (connection refused or timed out).
    pub transport: AtomicU64,
    pub examples: Mutex<Vec<String>>,
}

impl Tally {
    pub fn note(&self, counter: &AtomicU64, example: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut examples) = self.examples.lock()
            && examples.len() < 5
        {
            examples.push(example);
        }
    }
}

impl Tally {
    /// Reads a count.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// What the answers were, counted.
    pub fn answers(&self) -> Answers {
        let get = Tally::get;
        Answers {
            sent: get(&self.sent),
            exchanged: get(&self.exchanged),
            unavailable: get(&self.unavailable),
            wrong: get(&self.wrong_token),
            unexpected: get(&self.unexpected),
            transport: get(&self.transport),
        }
    }

    /// Prints the examples kept of what went wrong.
    pub fn print_examples(&self) {
        if let Ok(examples) = self.examples.lock() {
            for example in examples.iter() {
                println!("  example: {example}");
            }
        }
    }
}

/// One request as `sub`; a 200 must carry a token `issuer` issued for the
/// target, naming `sub`.
pub fn one_request(addr: SocketAddr, issuer: &str, sub: &str, token: &str, tally: &Tally) {
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let request = ClientRequest::get("/api/positions").header("authorization", &format!("Bearer {token}"));
    let response = match http_kit::send(addr, &request, Duration::from_secs(10)) {
        Ok(response) => response,
        Err(error) => return tally.note(&tally.transport, format!("no answer: {error}")),
    };
    let body: Value = response.json().unwrap_or(Value::Null);
    match response.status {
        200 => {
            let claims = &body["bearer_claims"];
            if claims["aud"] == TARGET_AUDIENCE && claims["sub"] == sub && claims["iss"] == issuer {
                tally.exchanged.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.note(&tally.wrong_token, format!("200 for {sub} with upstream claims {claims}"));
            }
        }
        503 if body["error"] == "temporarily_unavailable" && response.header("retry-after").is_some() => {
            tally.unavailable.fetch_add(1, Ordering::Relaxed);
        }
        status => tally.note(&tally.unexpected, format!("{status}: {}", response.body_str())),
    }
}

/// The answers of a run, counted.
#[derive(Debug, Clone, Copy)]
pub struct Answers {
    pub sent: u64,
    pub exchanged: u64,
    pub unavailable: u64,
    pub wrong: u64,
    pub unexpected: u64,
    pub transport: u64,
}

impl Answers {
    /// Prints them, over `elapsed`.
    pub fn print(&self, elapsed: Duration) {
        println!(
            "\nrequests sent         {} in {:.1} s ({:.0}/s)",
            self.sent,
            elapsed.as_secs_f64(),
            self.sent as f64 / elapsed.as_secs_f64()
        );
        println!("  200, token exchanged correctly   {}", self.exchanged);
        println!("  503 temporarily_unavailable      {}", self.unavailable);
        println!("  200 with a wrong upstream token  {}", self.wrong);
        println!("  any other answer                 {}", self.unexpected);
        println!("  no answer                        {}", self.transport);
    }
}

/// Prints each check with its outcome; whether all held.
pub fn print_checks(checks: &[(&str, bool)]) -> bool {
    for (name, ok) in checks {
        println!("{} {name}", if *ok { "ok  " } else { "FAIL" });
    }
    checks.iter().all(|(_, ok)| *ok)
}
