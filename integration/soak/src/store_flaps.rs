//! The store flaps: the same chain on three Envoy replicas behind a
//! round-robin Envoy balancer, sharing exchanged tokens (and the fleet's
//! single flight) through a real etcd, which is killed and restarted, then
//! frozen (SIGSTOP: a partition) and thawed, in turn.
//!
//! The IdP stays healthy and the store only saves calls, so every answer
//! must be a 200 with a correctly exchanged token, whatever etcd does; the
//! store must really have flapped (replicas counted it unavailable) and
//! really have been shared (tokens taken from it); each replica's memory
//! stays bounded; once etcd is back, one new user's burst across the three
//! replicas makes one IdP exchange.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use baton_harness::{Envoy, EnvoySpec, Etcd, sealing_secret};
use mock_idp::{Endpoint, MockIdp};
use serde_json::json;

use crate::Options;
use crate::idp_flaps::{CACHE_ENTRIES, chain};
use crate::load::{
    AUDIENCE, Answers, Tally, idp_and_backend, one_request, print_checks, start_clients, users,
};

const REPLICAS: usize = 3;
/// The store's call timeout: a frozen etcd costs a request this much per
/// store step before the replica goes to the IdP.
const STORE_TIMEOUT_MS: u64 = 250;

/// How etcd misbehaves, in turn.
#[derive(Debug, Clone, Copy)]
enum StoreFault {
    /// Killed: connections refused.
    Down,
    /// Frozen: connections accepted, nothing answered.
    Frozen,
}

/// Runs the variant; whether every invariant held.
pub fn run(options: &Options) -> Result<bool, String> {
    let (idp, backend) = idp_and_backend()?;
    let mut etcd = Etcd::start()?;
    let store = json!({"etcd": {"cluster": "etcd", "authority": etcd.addr().to_string(),
                                "timeoutMs": STORE_TIMEOUT_MS},
                       "sealingKeys": [{"id": "soak", "secret": sealing_secret()?}], "currentKey": "soak"});
    let spec = chain(&idp, &backend, Some((store, etcd.addr()))).concurrency(1);
    let replicas: Vec<Envoy> = (0..REPLICAS)
        .map(|_| Envoy::start(&spec))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("Envoy: {e}"))?;
    let addrs: Vec<_> = replicas.iter().map(Envoy::addr).collect();
    let balancer = Envoy::start(&EnvoySpec::balancer(&addrs).log_level("warning"))
        .map_err(|e| format!("balancer: {e}"))?;
    let users = users(&idp, options.users);
    println!(
        "soak, the store flapping: {} s, {} clients, {} users, {REPLICAS} replicas (caches of {CACHE_ENTRIES}) \
         behind a round-robin balancer, etcd (timeout {STORE_TIMEOUT_MS} ms) killed or frozen every {} s",
        options.seconds, options.clients, options.users, options.flap_seconds
    );

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let clients = start_clients(options.clients, &users, &tally, balancer.addr(), &idp.issuer(), deadline);
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); REPLICAS];
    let mut phases = Vec::new();
    let mut fault: Option<StoreFault> = None;
    let mut next_flip = started + Duration::from_secs(options.flap_seconds);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        if Instant::now() >= next_flip {
            fault = match fault {
                Some(StoreFault::Down) => {
                    etcd.restart()?;
                    None
                }
                Some(StoreFault::Frozen) => {
                    etcd.thaw()?;
                    None
                }
                None if phases.len() % 2 == 0 => {
                    etcd.kill();
                    phases.push("killed");
                    Some(StoreFault::Down)
                }
                None => {
                    etcd.freeze()?;
                    phases.push("frozen");
                    Some(StoreFault::Frozen)
                }
            };
            next_flip = Instant::now() + Duration::from_secs(options.flap_seconds);
        }
        for (samples, envoy) in rss.iter_mut().zip(&replicas) {
            if let Some(kib) = envoy.rss_kib() {
                samples.push(kib);
            }
        }
    }
    for client in clients {
        client.join().map_err(|_| "a client thread panicked".to_string())?;
    }
    let elapsed = started.elapsed();
    match fault {
        Some(StoreFault::Down) => etcd.restart()?,
        Some(StoreFault::Frozen) => etcd.thaw()?,
        None => {}
    }
    let sum = |name: &str| -> u64 { replicas.iter().map(|envoy| envoy.counter(name)).sum() };
    let counters = Counters {
        injected: sum("baton_obo.injected"),
        store_hit: sum("baton_obo.store.hit"),
        store_unavailable: sum("baton_obo.store.unavailable"),
        led: sum("baton_obo.store.flight_led"),
        followed: sum("baton_obo.store.flight_followed"),
        idp_calls: idp.calls(Endpoint::Token),
    };
    let burst = burst_after(&idp, &balancer)?;
    Ok(report(&counters, &tally, &rss, &phases, elapsed, burst))
}

/// With etcd healthy again: a new user's 12 concurrent requests through
/// the balancer (four per replica). Returns the IdP calls they made, or
/// `None` when a request failed.
fn burst_after(idp: &MockIdp, balancer: &Envoy) -> Result<Option<u64>, String> {
    // The replicas' keys are warm; the IdP is slowed so that every
    // replica's requests arrive while the first exchange is out.
    let mut claims = idp.standard_claims("after-soak", AUDIENCE, 300);
    claims["scope"] = json!("portfolio:read");
    let token = idp.mint(claims);
    // etcd may take a moment to be reachable again through each replica.
    thread::sleep(Duration::from_millis(500));
    let before = idp.calls(Endpoint::Token);
    idp.set_fault(Endpoint::Token, mock_idp::Fault::Delay(Duration::from_millis(400)), Some(1));
    let tally = Tally::default();
    thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| one_request(balancer.addr(), &idp.issuer(), "after-soak", &token, &tally));
        }
    });
    idp.clear_faults();
    if Tally::get(&tally.exchanged) != 12 {
        tally.print_examples();
        return Ok(None);
    }
    Ok(Some(idp.calls(Endpoint::Token) - before))
}

/// The replicas' counters, summed, and the IdP's calls.
#[derive(Debug, Clone, Copy)]
struct Counters {
    injected: u64,
    store_hit: u64,
    store_unavailable: u64,
    led: u64,
    followed: u64,
    idp_calls: u64,
}

fn report(
    counters: &Counters,
    tally: &Tally,
    rss: &[Vec<u64>],
    phases: &[&str],
    elapsed: Duration,
    burst: Option<u64>,
) -> bool {
    let answers = tally.answers();
    let Answers { sent, exchanged, .. } = answers;
    let Counters { injected, store_hit, store_unavailable, led, followed, idp_calls } = *counters;
    answers.print(elapsed);
    println!("etcd                   {}", phases.join(", "));
    println!("IdP token calls        {idp_calls}");
    println!(
        "counters (3 replicas)  baton_obo.injected {injected}, store.hit {store_hit}, store.unavailable \
         {store_unavailable}, store.flight_led {led}, store.flight_followed {followed}"
    );
    let mut bounded = true;
    for (replica, samples) in rss.iter().enumerate() {
        let half = samples.len() / 2;
        let peak = |part: &[u64]| part.iter().copied().max().unwrap_or(0);
        let (first, second) = (peak(&samples[..half]), peak(&samples[half..]));
        println!(
            "replica {replica} RSS          peak first half {} MiB, second half {} MiB",
            first / 1024,
            second / 1024
        );
        bounded &= second * 10 <= first * 11;
    }
    match burst {
        Some(calls) => {
            println!("after the soak         one user's 12 requests across the replicas: {calls} IdP call(s)")
        }
        None => println!("after the soak         a request of the burst failed"),
    }
    tally.print_examples();

    let checks = [
        ("every answer is a 200 with a correctly exchanged token", exchanged == sent),
        ("the replicas counted every request", injected == exchanged),
        (
            "the store really flapped (replicas found it unavailable)",
            store_unavailable > 0 && !phases.is_empty(),
        ),
        ("tokens were shared through the store", store_hit + followed > 0),
        ("memory bounded: each replica's second-half peak within 10% of its first", bounded),
        ("with etcd back, one user's burst across the replicas makes one IdP call", burst == Some(1)),
    ];
    print_checks(&checks)
}
