//! `make soak`: a bounded load run through claim-enforcement ->
//! obo-credential-injection (token exchange) in one Envoy, while the mock
//! IdP's token endpoint flaps between healthy and failing.
//!
//! Every response must be either a 200 whose upstream saw a correctly
//! exchanged token (`aud` = the target, `sub` = the caller) or the
//! documented 503 `temporarily_unavailable` with `retry-after`; Envoy must
//! stay up with its memory bounded (caches are small, so they evict); and
//! the filters' counters must add up to the requests sent. Prints the
//! figures; exits 1 when an invariant fails.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{DEMO_BROKER_SECRET, Endpoint, Fault, MockIdp, MockIdpConfig};
use serde_json::{Value, json};

const USAGE: &str = "usage: baton-soak [--seconds N] [--clients N] [--users N] [--flap-seconds N]";
const AUDIENCE: &str = "agent-broker";
const TARGET_AUDIENCE: &str = "portfolio-agent";
/// The verified-token and exchanged-token caches hold fewer entries than
/// there are users, so both evict throughout the run.
const CACHE_ENTRIES: u32 = 1000;

#[derive(Debug)]
struct Options {
    seconds: u64,
    clients: usize,
    users: usize,
    flap_seconds: u64,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options { seconds: 60, clients: 8, users: 3000, flap_seconds: 3 };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let value: u64 = args
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{arg} needs a number\n{USAGE}"))?;
            match arg.as_str() {
                "--seconds" => options.seconds = value,
                "--clients" => options.clients = value as usize,
                "--users" => options.users = value as usize,
                "--flap-seconds" => options.flap_seconds = value,
                _ => return Err(USAGE.to_string()),
            }
        }
        if options.seconds == 0 || options.clients == 0 || options.users == 0 || options.flap_seconds == 0 {
            return Err(format!("every value must be at least 1\n{USAGE}"));
        }
        Ok(options)
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    exchanged: AtomicU64,
    unavailable: AtomicU64,
    /// A 200 whose upstream token was not the right exchanged one.
    wrong_token: AtomicU64,
    /// Any other status, or an unreadable answer.
    unexpected: AtomicU64,
    /// No answer at all (connection refused or timed out).
    transport: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn note(&self, counter: &AtomicU64, example: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut examples) = self.examples.lock()
            && examples.len() < 5
        {
            examples.push(example);
        }
    }
}

/// A named way for the token endpoint to fail.
type NamedFault = (&'static str, fn() -> Fault);

/// The token endpoint's behaviour, cycling: healthy, then each fault in turn.
const FAULTS: [NamedFault; 6] = [
    ("503", || Fault::Status(503)),
    ("connection closed", || Fault::Close),
    ("slower than the timeout", || Fault::Delay(Duration::from_millis(1500))),
    ("HTML", || Fault::Html),
    ("500", || Fault::Status(500)),
    ("truncated", || Fault::Truncated),
];

fn main() -> ExitCode {
    match soak() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("soak failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn soak() -> Result<bool, String> {
    let options = Options::parse()?;
    let idp = MockIdp::start(MockIdpConfig {
        access_token_ttl: Duration::from_secs(45),
        ..MockIdpConfig::default()
    })
    .map_err(|e| format!("mock IdP: {e}"))?;
    let backend = EchoBackend::start().map_err(|e| format!("echo backend: {e}"))?;
    let envoy = Envoy::start(&chain(&idp, &backend)).map_err(|e| format!("Envoy: {e}"))?;
    let users: Vec<(String, String)> = (0..options.users)
        .map(|i| {
            let sub = format!("user-{i}");
            let mut claims = idp.standard_claims(&sub, AUDIENCE, 3600);
            claims["scope"] = json!("portfolio:read");
            let token = idp.mint(claims);
            (sub, token)
        })
        .collect();
    let users = Arc::new(users);
    println!(
        "soak: {} s, {} clients, {} users, caches of {CACHE_ENTRIES}, IdP token endpoint flapping every {} s; Envoy pid {}",
        options.seconds,
        options.clients,
        options.users,
        options.flap_seconds,
        envoy.pid()
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let clients: Vec<_> = (0..options.clients)
        .map(|client| {
            let (users, tally, addr, issuer) =
                (Arc::clone(&users), Arc::clone(&tally), envoy.addr(), idp.issuer());
            thread::spawn(move || {
                // Users in random order (xorshift), so the caches, smaller
                // than the user count, both hit and evict.
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
        .collect();

    // Flap the IdP and sample Envoy's memory until the clients are done.
    let mut rss_samples: Vec<(u64, u64)> = Vec::new();
    let mut phases: Vec<String> = Vec::new();
    let mut fault_index = 0;
    let mut failing = false;
    let mut next_flip = started + Duration::from_secs(options.flap_seconds);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        if now >= next_flip {
            if failing {
                idp.clear_faults();
            } else {
                let (name, fault) = FAULTS[fault_index % FAULTS.len()];
                idp.set_fault(Endpoint::Token, fault(), None);
                phases.push(name.to_string());
                fault_index += 1;
            }
            failing = !failing;
            next_flip = now + Duration::from_secs(options.flap_seconds);
        }
        if let Some(rss) = envoy.rss_kib() {
            rss_samples.push((now.duration_since(started).as_millis() as u64, rss));
        }
    }
    for client in clients {
        client.join().map_err(|_| "a client thread panicked".to_string())?;
    }
    let elapsed = started.elapsed();
    let counters = Counters::read(&envoy, &idp);
    idp.clear_faults();

    // Recovery: with the IdP healthy again, a request for a new user works
    // (within 10 s; the time it took is reported).
    let mut claims = idp.standard_claims("after-soak", AUDIENCE, 300);
    claims["scope"] = json!("portfolio:read");
    let token = idp.mint(claims);
    let healed = Instant::now();
    let after = Tally::default();
    let recovered = loop {
        one_request(envoy.addr(), &idp.issuer(), "after-soak", &token, &after);
        if after.exchanged.load(Ordering::Relaxed) == 1 {
            break Some(healed.elapsed());
        }
        if healed.elapsed() > Duration::from_secs(10) {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };

    Ok(report(&counters, &tally, &rss_samples, &phases, elapsed, recovered))
}

/// claim-enforcement verifies the caller's token; obo-credential-injection
/// exchanges it for the portfolio agent's audience.
fn chain(idp: &MockIdp, backend: &EchoBackend) -> EnvoySpec {
    let provider = json!({"name": "corp", "issuer": idp.issuer(), "audiences": [AUDIENCE], "algorithms": ["ES256"],
                          "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}});
    EnvoySpec::new(backend.addr())
        .log_level("warning")
        .concurrency(2)
        .cluster("idp", idp.addr())
        .filter(
            "claim_enforcement",
            json!({"providers": [provider],
                   "routes": [{"name": "api", "match": {"pathPrefix": "/"}, "require": {"scopes": {"allOf": ["portfolio:read"]}}}],
                   "cache": {"maxEntries": CACHE_ENTRIES}, "auditLog": false}),
        )
        .filter(
            "obo_credential_injection",
            json!({"idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                             "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
                   "subjectToken": {"validation": "jwks", "providers": [provider]},
                   "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                                "audiences": [TARGET_AUDIENCE], "scope": "portfolio:read"}],
                   "cache": {"maxEntries": CACHE_ENTRIES}, "auditLog": false}),
        )
}

/// One request as `sub`; a 200 must carry a token `issuer` issued for the
/// target, naming `sub`.
fn one_request(addr: std::net::SocketAddr, issuer: &str, sub: &str, token: &str, tally: &Tally) {
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

/// The filters' counters and the IdP's call count at the end of the load.
#[derive(Debug, Clone, Copy)]
struct Counters {
    ce_allowed: u64,
    ce_denied: u64,
    injected: u64,
    obo_unavailable: u64,
    obo_other: u64,
    idp_calls: u64,
}

impl Counters {
    fn read(envoy: &Envoy, idp: &MockIdp) -> Counters {
        let sum = |prefix: &str, names: &[&str]| -> u64 {
            names.iter().map(|name| envoy.counter(&format!("{prefix}{name}"))).sum()
        };
        Counters {
            ce_allowed: envoy.counter("baton_ce.allowed"),
            ce_denied: sum(
                "baton_ce.denied.",
                &[
                    "missing_token",
                    "invalid_request",
                    "invalid_token",
                    "insufficient_scope",
                    "step_up_required",
                    "no_route",
                    "keys_unavailable",
                ],
            ),
            injected: envoy.counter("baton_obo.injected"),
            obo_unavailable: envoy.counter("baton_obo.denied.unavailable"),
            obo_other: sum(
                "baton_obo.denied.",
                &[
                    "no_target",
                    "missing_token",
                    "invalid_request",
                    "invalid_token",
                    "delegation",
                    "idp_refused",
                ],
            ),
            idp_calls: idp.calls(Endpoint::Token),
        }
    }
}

fn report(
    counters: &Counters,
    tally: &Tally,
    rss: &[(u64, u64)],
    phases: &[String],
    elapsed: Duration,
    recovered: Option<Duration>,
) -> bool {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let sent = get(&tally.sent);
    let (exchanged, unavailable) = (get(&tally.exchanged), get(&tally.unavailable));
    let (wrong, unexpected, transport) =
        (get(&tally.wrong_token), get(&tally.unexpected), get(&tally.transport));
    let Counters { ce_allowed, ce_denied, injected, obo_unavailable, obo_other, idp_calls } = *counters;

    let first_rss = rss.first().map_or(0, |s| s.1);
    let half = rss.len() / 2;
    let peak = |samples: &[(u64, u64)]| samples.iter().map(|s| s.1).max().unwrap_or(0);
    let (peak_first_half, peak_second_half) = (peak(&rss[..half]), peak(&rss[half..]));
    let last_rss = rss.last().map_or(0, |s| s.1);

    println!(
        "\nrequests sent         {sent} in {:.1} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!("  200, token exchanged correctly   {exchanged}");
    println!("  503 temporarily_unavailable      {unavailable}");
    println!("  200 with a wrong upstream token  {wrong}");
    println!("  any other answer                 {unexpected}");
    println!("  no answer                        {transport}");
    println!("IdP faults cycled      {}", phases.join(", "));
    println!("IdP token calls        {idp_calls}");
    println!(
        "counters               baton_ce.allowed {ce_allowed}, baton_ce.denied.* {ce_denied}; baton_obo.injected {injected}, baton_obo.denied.unavailable {obo_unavailable}, other baton_obo.denied.* {obo_other}"
    );
    println!(
        "Envoy RSS              first {} MiB, peak first half {} MiB, peak second half {} MiB, last {} MiB",
        first_rss / 1024,
        peak_first_half / 1024,
        peak_second_half / 1024,
        last_rss / 1024
    );
    match recovered {
        Some(took) => {
            println!("recovery               first success {} ms after the IdP was healthy", took.as_millis())
        }
        None => println!("recovery               none within 10 s"),
    }
    if let Ok(examples) = tally.examples.lock() {
        for example in examples.iter() {
            println!("  example: {example}");
        }
    }

    let checks = [
        ("every answer is an exchanged token or a documented 503", wrong == 0 && unexpected == 0),
        ("Envoy answered every request", transport == 0),
        ("both outcomes occurred (the IdP really flapped)", exchanged > 0 && unavailable > 0),
        ("client tallies add up", exchanged + unavailable + wrong + unexpected + transport == sent),
        ("claim-enforcement counted every request", ce_allowed + ce_denied == sent && ce_denied == 0),
        (
            "obo counters match the clients",
            injected == exchanged && obo_unavailable == unavailable && obo_other == 0,
        ),
        (
            "memory bounded: second-half peak within 10% of the first half's",
            peak_second_half * 10 <= peak_first_half * 11,
        ),
        ("a request after the IdP recovered succeeds", recovered.is_some()),
    ];
    let mut all = true;
    for (name, ok) in checks {
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
        all &= ok;
    }
    all
}
