//! The IdP flaps: load through claim-enforcement -> obo-credential-injection
//! (token exchange) in one Envoy, while the mock IdP's token endpoint flaps
//! between healthy and failing.
//!
//! Every response must be either a 200 whose upstream saw a correctly
//! exchanged token (`aud` = the target, `sub` = the caller) or the
//! documented 503 `temporarily_unavailable` with `retry-after`; Envoy must
//! stay up with its memory bounded (caches are small, so they evict); and
//! the filters' counters must add up to the requests sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec};
use echo_backend::EchoBackend;
use mock_idp::{DEMO_BROKER_SECRET, Endpoint, Fault, MockIdp};
use serde_json::{Value, json};

use crate::Options;
use crate::load::{
    AUDIENCE, Answers, TARGET_AUDIENCE, Tally, idp_and_backend, one_request, print_checks, start_clients,
    users,
};

/// The verified-token and exchanged-token caches hold fewer entries than
/// there are users, so both evict throughout the run.
pub const CACHE_ENTRIES: u32 = 1000;

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

/// Runs the variant; whether every invariant held.
pub fn run(options: &Options) -> Result<bool, String> {
    let (idp, backend) = idp_and_backend()?;
    let envoy = Envoy::start(&chain(&idp, &backend, None)).map_err(|e| format!("Envoy: {e}"))?;
    let users = users(&idp, options.users);
    println!(
        "soak, the IdP flapping: {} s, {} clients, {} users, caches of {CACHE_ENTRIES}, IdP token endpoint flapping every {} s; Envoy pid {}",
        options.seconds,
        options.clients,
        options.users,
        options.flap_seconds,
        envoy.pid()
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let clients = start_clients(options.clients, &users, &tally, envoy.addr(), &idp.issuer(), deadline);

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
        if Tally::get(&after.exchanged) == 1 {
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
/// With `store` (obo's `store` section and etcd's address), exchanged
/// tokens are shared through etcd.
pub fn chain(idp: &MockIdp, backend: &EchoBackend, store: Option<(Value, SocketAddr)>) -> EnvoySpec {
    let provider = json!({"name": "corp", "issuer": idp.issuer(), "audiences": [AUDIENCE], "algorithms": ["ES256"],
                          "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "timeoutMs": 1000}}});
    let mut obo = json!({"idps": [{"name": "corp", "cluster": "idp", "tokenPath": "/token", "timeoutMs": 1000,
                                   "clientId": "agent-broker", "clientSecret": DEMO_BROKER_SECRET}],
                         "subjectToken": {"validation": "jwks", "providers": [provider]},
                         "targets": [{"name": "portfolio", "mode": "tokenExchange", "idp": "corp",
                                      "audiences": [TARGET_AUDIENCE], "scope": "portfolio:read"}],
                         "cache": {"maxEntries": CACHE_ENTRIES}, "auditLog": false});
    let mut spec = EnvoySpec::new(backend.addr()).log_level("warning").cluster("idp", idp.addr());
    if let Some((section, etcd)) = store {
        obo["store"] = section;
        spec = spec.cluster("etcd", etcd);
    }
    spec.concurrency(2)
        .filter(
            "claim_enforcement",
            json!({"providers": [provider],
                   "routes": [{"name": "api", "match": {"pathPrefix": "/"}, "require": {"scopes": {"allOf": ["portfolio:read"]}}}],
                   "cache": {"maxEntries": CACHE_ENTRIES}, "auditLog": false}),
        )
        .filter("obo_credential_injection", obo)
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
    let answers = tally.answers();
    let Answers { sent, exchanged, unavailable, wrong, unexpected, transport } = answers;
    let Counters { ce_allowed, ce_denied, injected, obo_unavailable, obo_other, idp_calls } = *counters;

    let first_rss = rss.first().map_or(0, |s| s.1);
    let half = rss.len() / 2;
    let peak = |samples: &[(u64, u64)]| samples.iter().map(|s| s.1).max().unwrap_or(0);
    let (peak_first_half, peak_second_half) = (peak(&rss[..half]), peak(&rss[half..]));
    let last_rss = rss.last().map_or(0, |s| s.1);

    answers.print(elapsed);
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
    tally.print_examples();

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
    print_checks(&checks)
}
