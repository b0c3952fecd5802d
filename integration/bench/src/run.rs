//! Starting each configuration's Envoy, proving it does its work, and the
//! interleaved measurement rounds.

use std::time::{Duration, Instant};

use baton_harness::Envoy;
use http_kit::{ClientRequest, ClientResponse, parse_urlencoded};
use mock_idp::Endpoint;

use crate::configs::{AGENT_TASK, Configuration, transfer_message};
use crate::world::{REDIRECT, World};
use crate::wrk::{RunResult, Workload, Wrk};

/// Warm-up load before the first round: fills caches and JIT tiers.
const WARM_UP: Duration = Duration::from_secs(2);
/// Load just before each measured run, unmeasured: the Envoy sat idle
/// while the others ran, and its first second would measure cold caches.
const PRE_RUN: Duration = Duration::from_secs(1);
/// How long a freshly started Envoy may take to serve its first success
/// (credential_injector fetches its token in the background).
const FIRST_SUCCESS: Duration = Duration::from_secs(15);

/// A configuration's running Envoy and its figures so far.
#[derive(Debug)]
pub struct Running {
    /// What runs.
    pub config: Configuration,
    /// The Envoy.
    pub envoy: Envoy,
    /// Start-to-ready time.
    pub startup: Duration,
    /// Measured rounds, in order.
    pub rounds: Vec<RunResult>,
    /// Token-endpoint calls from start to the end of the warm-up.
    pub setup_idp_calls: u64,
    /// Requests sent from start to the end of the warm-up.
    pub setup_requests: u64,
    /// Token-endpoint calls during the measured rounds.
    pub run_idp_calls: u64,
}

/// Starts `config`'s Envoy, checks it, and warms it up. The IdP calls it
/// makes meanwhile are counted, so this runs one configuration at a time.
pub fn prepare(config: Configuration, world: &World, wrk: &Wrk) -> Result<Running, String> {
    let id = config.id;
    let calls_before = world.idp.calls(Endpoint::Token);
    let started = Instant::now();
    let envoy = Envoy::start(&config.spec).map_err(|e| format!("{id}: Envoy did not start: {e}"))?;
    let startup = started.elapsed();
    if config.needs_bank_authorization {
        authorize_transfers(&envoy, world).map_err(|e| format!("{id}: {e}"))?;
    }
    let mut setup_requests = first_success(&envoy, &config.workload).map_err(|e| format!("{id}: {e}"))?;
    if let Some(status) = config.refuses_without_token {
        let response = envoy.send(&request(&config.workload, false));
        if response.status != status {
            return Err(format!(
                "{id}: a request without its token got {} (expected {status}): the filter is not enforcing",
                response.status
            ));
        }
        setup_requests += 1;
    }
    let warm = wrk.run(envoy.addr(), &config.workload, WARM_UP).map_err(|e| format!("{id}: warm-up: {e}"))?;
    setup_requests += warm.requests;
    let setup_idp_calls = world.idp.calls(Endpoint::Token) - calls_before;
    Ok(Running {
        config,
        envoy,
        startup,
        rounds: Vec::new(),
        setup_idp_calls,
        setup_requests,
        run_idp_calls: 0,
    })
}

/// One measured run of `running`, with the proof that every request was
/// handled by the filter as configured.
pub fn measure(
    running: &mut Running,
    world: &World,
    wrk: &Wrk,
    duration: Duration,
) -> Result<RunResult, String> {
    let id = running.config.id;
    wrk.run(running.envoy.addr(), &running.config.workload, PRE_RUN).map_err(|e| format!("{id}: {e}"))?;
    let before: Vec<u64> = running.config.work_stats.iter().map(|stat| running.envoy.stat(stat)).collect();
    let calls_before = world.idp.calls(Endpoint::Token);
    let cpu_before = cpu_ns(running.envoy.pid());
    let mut result = wrk
        .run(running.envoy.addr(), &running.config.workload, duration)
        .map_err(|e| format!("{id}: {e}"))?;
    result.envoy_cpu_ns_per_request =
        cpu_ns(running.envoy.pid()).saturating_sub(cpu_before) / result.requests.max(1);
    if running.config.counts_idp_calls {
        running.run_idp_calls += world.idp.calls(Endpoint::Token) - calls_before;
    }
    for (stat, before) in running.config.work_stats.iter().zip(before) {
        let grew = running.envoy.stat(stat).saturating_sub(before);
        if grew < result.requests {
            return Err(format!(
                "{id}: {stat} grew by {grew} over {} requests: the configuration did not do what it claims",
                result.requests
            ));
        }
    }
    running.rounds.push(result);
    Ok(result)
}

/// CPU time Envoy's threads have run, in ns: the sum of
/// `se.sum_exec_runtime` (ms) over `/proc/PID/task/*/sched`. Unlike
/// throughput, it does not count time the machine gave to others.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let runtime_ms = |sched: String| {
        sched
            .lines()
            .find(|line| line.starts_with("se.sum_exec_runtime"))
            .and_then(|line| line.split(':').nth(1))
            .and_then(|ms| ms.trim().parse::<f64>().ok())
    };
    let total_ms: f64 = tasks
        .filter_map(|task| task.ok())
        .filter_map(|task| std::fs::read_to_string(task.path().join("sched")).ok())
        .filter_map(runtime_ms)
        .sum();
    (total_ms * 1e6) as u64
}

/// The workload's request (with the first token of a pool), with or
/// without its credential.
fn request(workload: &Workload, with_credential: bool) -> ClientRequest {
    let mut request = match &workload.body {
        Some(body) => ClientRequest::post(&workload.path, "application/json", body.clone().into_bytes()),
        None => ClientRequest::get(&workload.path),
    };
    for (name, value) in &workload.headers {
        let skip = name.eq_ignore_ascii_case("content-type")
            || (name.eq_ignore_ascii_case("authorization") && !with_credential);
        if !skip {
            request = request.header(name, value);
        }
    }
    if let Some(token) = workload.token_pool.first().filter(|_| with_credential) {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    request
}

/// Sends the workload's request until it succeeds; returns how many were sent.
fn first_success(envoy: &Envoy, workload: &Workload) -> Result<u64, String> {
    let deadline = Instant::now() + FIRST_SUCCESS;
    let mut sent = 0;
    loop {
        let response = envoy.send(&request(workload, true));
        sent += 1;
        if response.status == 200 {
            return Ok(sent);
        }
        if Instant::now() >= deadline {
            return Err(format!("the workload's request got {}: {}", response.status, response.body_str()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Walks alice through the bank authorization for a transfer, so the
/// agent's task [`AGENT_TASK`] carries her bank token from then on.
fn authorize_transfers(envoy: &Envoy, world: &World) -> Result<(), String> {
    let post = |body: String| {
        envoy.send(
            &ClientRequest::post("/", "application/json", body.into_bytes())
                .header("authorization", &format!("Bearer {}", world.es256_token)),
        )
    };
    let challenge = post(transfer_message(None));
    let answer = challenge.json().map_err(|e| format!("challenge is not JSON: {e}"))?;
    let gateway_task = answer["result"]["id"].as_str().ok_or("the challenge names no task")?.to_string();
    let url = answer["result"]["status"]["message"]["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find_map(|part| part.pointer("/data/authChallenge/authorizationUrl")))
        .and_then(|url| url.as_str())
        .ok_or_else(|| format!("no authorization URL in {}", challenge.body_str()))?;
    let path =
        url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).ok_or("bad URL")?;
    let redirect = http_kit::send(
        world.bank.addr(),
        &ClientRequest::get(&format!("{path}&login_hint=alice")),
        Duration::from_secs(5),
    )
    .map_err(|e| format!("bank authorize: {e}"))?;
    let location = redirect.header("location").ok_or("the bank did not redirect")?;
    let query =
        location.strip_prefix(REDIRECT).and_then(|rest| rest.strip_prefix('?')).ok_or("bad redirect")?;
    let params = parse_urlencoded(query);
    let param =
        |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let callback =
        envoy.get(&format!("/a2a/oauth/callback?code={}&state={}", param("code"), param("state")), &[]);
    expect_ok("callback", &callback)?;
    // The gateway's task continues: the token goes upstream and the agent's
    // answer binds it to the agent's own task id.
    expect_ok("first transfer", &post(transfer_message(Some(&gateway_task))))?;
    let second = post(transfer_message(Some(AGENT_TASK)));
    expect_ok("transfer in the agent's task", &second)?;
    if second.body_str().contains("auth-required") {
        return Err("the agent's task has no stored token".to_string());
    }
    Ok(())
}

fn expect_ok(what: &str, response: &ClientResponse) -> Result<(), String> {
    if response.status == 200 {
        Ok(())
    } else {
        Err(format!("{what} got {}: {}", response.status, response.body_str()))
    }
}
