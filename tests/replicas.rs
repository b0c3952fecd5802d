//! in-task-auth-code on two Envoy replicas sharing a real etcd (issue 16):
//! the `state` is the pending authorization sealed, so the bank's redirect
//! may land on another replica than the one that challenged, or on a
//! replica restarted in between; its single use is agreed in etcd, so a
//! replay is refused on every replica; with etcd down the redirect is 503
//! and nothing is exchanged, and the same redirect succeeds once etcd is
//! back. The bank token kept by the replica that took the redirect is
//! written to etcd sealed, so the user's next message on the other replica
//! carries it to the agent. A dump of etcd shows no user, task, state or
//! token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use baton_harness::{Envoy, EnvoySpec, Etcd, body_json};
use echo_backend::EchoBackend;
use http_kit::ClientRequest;
use mock_idp::{Endpoint, MockIdp};
use ring::rand::SecureRandom;
use serde_json::{Value, json};

#[path = "common/bank.rs"]
mod bank;
use bank::{auth_challenge, bank, filter_config};

/// The bank, the agent, etcd and the filter's configuration every replica
/// runs (one sealing key, made for this test).
struct Fleet {
    bank: MockIdp,
    agent: EchoBackend,
    etcd: Etcd,
    /// The other members, for a fleet on an etcd cluster.
    more_members: Vec<Etcd>,
    config: Value,
}

impl Fleet {
    fn start() -> Fleet {
        Self::on(Etcd::start().unwrap_or_else(|e| panic!("{e}")), Vec::new())
    }

    /// On a cluster of three etcd members, which each replica reaches as
    /// one Envoy cluster, health-checked.
    fn start_on_three_members() -> Fleet {
        let mut members = Etcd::start_cluster(3).unwrap_or_else(|e| panic!("{e}"));
        let first = members.remove(0);
        Self::on(first, members)
    }

    fn on(etcd: Etcd, more_members: Vec<Etcd>) -> Fleet {
        let bank = bank();
        let agent = EchoBackend::start_a2a_agent().unwrap();
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut secret).unwrap();
        let mut config = filter_config(&bank);
        config["store"] = json!({
            "etcd": {"cluster": "etcd", "authority": etcd.addr().to_string(), "timeoutMs": 1000},
            "sealingKeys": [{"id": "k1", "secret": STANDARD.encode(secret)}],
            "currentKey": "k1"
        });
        Fleet { bank, agent, etcd, more_members, config }
    }

    /// One more Envoy replica.
    fn replica(&self) -> Envoy {
        let spec = EnvoySpec::new(self.agent.addr())
            .cluster("bank_idp", self.bank.addr())
            .filter("in_task_auth_code", self.config.clone());
        let spec = if self.more_members.is_empty() {
            spec.cluster("etcd", self.etcd.addr())
        } else {
            spec.raw_cluster(self.etcd_cluster())
        };
        Envoy::start(&spec).unwrap_or_else(|e| panic!("Envoy did not start: {e}"))
    }

    /// Every member as one Envoy cluster, as a deployment would write it:
    /// outlier detection takes a member that stops accepting connections out
    /// of the rotation.
    fn etcd_cluster(&self) -> Value {
        let endpoints: Vec<Value> = std::iter::once(&self.etcd)
            .chain(&self.more_members)
            .map(|member| {
                json!({"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": member.addr().port()}}}})
            })
            .collect();
        json!({
            "name": "etcd",
            "type": "STATIC",
            "connect_timeout": "0.25s",
            "load_assignment": {"cluster_name": "etcd", "endpoints": [{"lb_endpoints": endpoints}]},
            // A member that refuses connections is taken out of the
            // rotation after two failures in a row, for 30 s (at most one of
            // three; a member slow once during an election stays).
            "outlier_detection": {
                "split_external_local_origin_errors": true,
                "consecutive_local_origin_failure": 2,
                "enforcing_consecutive_local_origin_failure": 100,
                "interval": "0.25s",
                "base_ejection_time": "30s",
                "max_ejection_percent": 34
            }
        })
    }

    /// alice asks `replica` for a transfer and approves at the bank: the
    /// gateway's task id, the code and the state of the bank's redirect.
    fn challenge_and_approve(&self, replica: &Envoy) -> (String, String, String) {
        let challenge = post(replica, "alice", None);
        assert_eq!(challenge.status, 200, "{}", challenge.body_str());
        let task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
        let url = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
        let (_, code, state) = bank::approve(&self.bank, &url, "alice");
        (task, code, state)
    }

    /// Every key and value under Baton's prefix in etcd, decoded.
    fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.etcd.dump("baton/").unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A transfer message from `user`, in `task` if given, which leaves the
/// agent's task open.
fn post(replica: &Envoy, user: &str, task: Option<&str>) -> http_kit::ClientResponse {
    post_with(replica, user, task, true)
}

/// A transfer message from `user`, in `task` if given; the agent completes
/// the task unless `keep_open`.
fn post_with(replica: &Envoy, user: &str, task: Option<&str>, keep_open: bool) -> http_kit::ClientResponse {
    let data = json!({"operation": "transfer", "amount": 250, "to": "bob", "keepOpen": keep_open});
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m-1",
                             "parts": [{"kind": "text", "text": "send 250 to bob"}, {"kind": "data", "data": data}]});
    if let Some(task) = task {
        message["taskId"] = json!(task);
        message["contextId"] = json!("ctx-1");
    }
    let body =
        json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}});
    replica.send(
        &ClientRequest::post("/", "application/json", body.to_string())
            .header("authorization", &bank::bearer(user)),
    )
}

fn redirect(replica: &Envoy, code: &str, state: &str) -> http_kit::ClientResponse {
    replica.get(&format!("/a2a/oauth/callback?code={code}&state={state}"), &[("accept", "text/html")])
}

/// No key or value of `dump` holds any of `secrets`.
fn shows_none_of(dump: &[(Vec<u8>, Vec<u8>)], secrets: &[&[u8]]) {
    for (key, value) in dump {
        for secret in secrets {
            assert!(
                !contains(key, secret) && !contains(value, secret),
                "etcd shows {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn the_redirect_lands_on_another_replica_and_is_used_once_across_the_fleet() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.replica(), fleet.replica());
    let (task, code, state) = fleet.challenge_and_approve(&a);

    let page = redirect(&b, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert!(page.body_str().contains("Authorization complete"), "{}", page.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1, "one code exchange");
    assert_eq!(b.counter("baton_itac.codes_exchanged"), 1);

    // A replay is refused on every replica, and asks the bank nothing.
    for (name, replica) in [("the replica that challenged", &a), ("the replica that exchanged", &b)] {
        let replay = redirect(replica, &code, &state);
        assert_eq!(replay.status, 400, "replayed on {name}: {}", replay.body_str());
    }
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1, "a replay reached the bank");

    // The replica that exchanged the code serves the task with the token.
    let answer = post(&b, "alice", Some(&task));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 1, "the agent got the message");
    let token = seen[0].header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let claims = mock_idp::decode_claims_unverified(&token).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("bank-api")));

    // etcd holds the single-use mark, and nothing that names anyone.
    let dump = fleet.dump();
    assert!(!dump.is_empty(), "no single-use mark in etcd");
    shows_none_of(&dump, &[b"alice", state.as_bytes(), code.as_bytes(), task.as_bytes(), token.as_bytes()]);
}

#[test]
fn the_next_message_on_the_replica_that_challenged_carries_the_token_the_other_kept() {
    let mut fleet = Fleet::start();
    let (a, b) = (fleet.replica(), fleet.replica());
    // alice is challenged on A, the bank's redirect lands on B.
    let (task, code, state) = fleet.challenge_and_approve(&a);
    let page = redirect(&b, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert_eq!(b.counter("baton_itac.store.write_failed"), 0);
    let dump = fleet.dump();
    assert_eq!(dump.len(), 3, "the single-use mark, alice's record and the task's gate");

    // Her next message, in the gateway's task, lands on A: it reads the
    // token B wrote to etcd and carries it to the agent, not a challenge.
    let answer = post(&a, "alice", Some(&task));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    assert!(!answer.body_str().contains("authorizationUrl"), "challenged again: {}", answer.body_str());
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 1, "the agent got the message");
    let token = seen[0].header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let claims = mock_idp::decode_claims_unverified(&token).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("bank-api")));
    let forwarded: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(forwarded["params"]["message"].get("taskId"), None, "the gateway's task id is not forwarded");
    assert_eq!(a.counter("baton_itac.tokens_injected"), 1);
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1, "one code exchange in all");

    // bob, naming alice's task on A: challenged, nothing reaches the agent.
    let bobs = post(&a, "bob", Some(&task));
    assert_eq!(bobs.status, 200, "{}", bobs.body_str());
    assert!(auth_challenge(&bobs)["authorizationUrl"].is_string(), "{}", bobs.body_str());
    assert_eq!(fleet.agent.requests().len(), 1, "bob's message reached the agent");

    // etcd held the mark and alice's record, and nothing that names
    // anyone; no log line shows the token or the state.
    shows_none_of(&dump, &[b"alice", state.as_bytes(), code.as_bytes(), task.as_bytes(), token.as_bytes()]);
    for replica in [&a, &b] {
        let logs = replica.logs();
        assert!(!logs.contains(&token) && !logs.contains(&state), "a log shows the token or the state");
    }

    // The agent named its own task for the gateway's: A deleted the gateway
    // task's record from etcd and wrote the token under the agent's task
    // before alice got the answer (it was held for them).
    let agent_task = body_json(&answer)["result"]["id"].as_str().unwrap().to_string();
    assert_ne!(agent_task, task);
    let keys = |dump: &[(Vec<u8>, Vec<u8>)]| dump.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>();
    let before = keys(&dump);
    let moved = fleet.dump();
    // The mark; the agent's task's record and gate; and the gate of the
    // gateway's task, which bob's challenge in it set again.
    assert_eq!(moved.len(), 4, "the mark, the agent's task's record and gate, the gate bob's challenge set");
    assert_eq!(keys(&moved).iter().filter(|key| before.contains(key)).count(), 2, "alice's record stayed");
    shows_none_of(&moved, &[b"alice", agent_task.as_bytes(), token.as_bytes()]);
    assert_eq!(a.counter("baton_itac.store.write_failed"), 0);
    // alice's next message, in the agent's task, lands on B: the token A
    // wrote goes with it.
    let next = post(&b, "alice", Some(&agent_task));
    assert_eq!(next.status, 200, "{}", next.body_str());
    assert!(!next.body_str().contains("authorizationUrl"), "challenged again: {}", next.body_str());
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("authorization"), Some(format!("Bearer {token}").as_str()));

    // A message that needs etcd while it is down: 503, nothing forwarded,
    // never a challenge loop.
    fleet.etcd.kill();
    let carol = fleet.replica();
    let down = post(&carol, "alice", Some(&agent_task));
    assert_eq!(down.status, 503, "{}", down.body_str());
    assert_eq!(fleet.agent.requests().len(), 2, "forwarded while etcd was down");
    assert!(carol.counter("baton_itac.store.unavailable") >= 1);
}

/// A transfer message from `user` in `task`, streamed (`message/stream`):
/// the events of the answer, as JSON.
fn stream(replica: &Envoy, user: &str, task: &str, keep_open: bool) -> Vec<Value> {
    let data = json!({"operation": "transfer", "amount": 250, "to": "bob", "keepOpen": keep_open});
    let message = json!({"kind": "message", "role": "user", "messageId": "m-2", "taskId": task, "contextId": "ctx-1",
                         "parts": [{"kind": "text", "text": "send 250 to bob"}, {"kind": "data", "data": data}]});
    let body =
        json!({"jsonrpc": "2.0", "id": "req-2", "method": "message/stream", "params": {"message": message}});
    let answer = replica.send(
        &ClientRequest::post("/", "application/json", body.to_string())
            .header("authorization", &bank::bearer(user))
            .header("accept", "text/event-stream"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    let events: Vec<Value> = answer
        .body_str()
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", answer.body_str());
    events
}

/// A task call (`tasks/get`, `tasks/cancel`) from `user` on `task`.
fn task_call(replica: &Envoy, user: &str, method: &str, task: &str) -> http_kit::ClientResponse {
    let body = json!({"jsonrpc": "2.0", "id": "req-3", "method": method, "params": {"id": task}});
    replica.send(
        &ClientRequest::post("/", "application/json", body.to_string())
            .header("authorization", &bank::bearer(user)),
    )
}

/// The task the gateway names in its challenge is the gateway's on every
/// replica: written to etcd before the client learns of it, so GetTask on
/// a replica that never saw it answers with the same link (the agent never
/// hears of it), "continue" there is challenged in the same task, and
/// CancelTask there ends the task and its authorization for the fleet.
#[test]
fn the_gateways_task_is_answered_for_by_every_replica_and_canceled_for_all() {
    let fleet = Fleet::start();
    let (a, b, c) = (fleet.replica(), fleet.replica(), fleet.replica());
    let challenge = post(&a, "alice", None);
    assert_eq!(challenge.status, 200, "{}", challenge.body_str());
    let task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let context = body_json(&challenge)["result"]["contextId"].as_str().unwrap().to_string();
    let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    assert_eq!(
        fleet.dump().len(),
        2,
        "the gateway's task and its gate, in etcd when the client had the challenge"
    );

    // GetTask at once on B: the same task, context and link.
    let got = task_call(&b, "alice", "tasks/get", &task);
    assert_eq!(got.status, 200, "{}", got.body_str());
    let got_json = body_json(&got);
    assert_eq!(got_json["result"]["id"], task.as_str(), "{got_json}");
    assert_eq!(got_json["result"]["contextId"], context.as_str());
    assert_eq!(got_json["result"]["status"]["state"], "auth-required");
    assert_eq!(auth_challenge(&got)["authorizationUrl"], link.as_str());
    // bob asking for it on B: not his; the agent answers (it knows no such
    // task), nothing of alice's is shown.
    let bobs = task_call(&b, "bob", "tasks/get", &task);
    assert!(!bobs.body_str().contains(&link), "{}", bobs.body_str());
    assert_eq!(fleet.agent.requests().len(), 1, "bob's call went to the agent");

    // "continue" on C before authorizing: challenged in the same task.
    let again = post(&c, "alice", Some(&task));
    assert_eq!(body_json(&again)["result"]["id"], task.as_str(), "{}", again.body_str());
    assert!(auth_challenge(&again)["authorizationUrl"].is_string());
    assert_eq!(fleet.agent.requests().len(), 1, "a message reached the agent without the token");

    // CancelTask on B: canceled; the task's record and its authorizations
    // are over on every replica. The first link, approved at the bank and
    // redirected to A, is refused there, and nothing is exchanged.
    let canceled = task_call(&b, "alice", "tasks/cancel", &task);
    assert_eq!(body_json(&canceled)["result"]["status"]["state"], "canceled", "{}", canceled.body_str());
    assert!(
        b.wait_for(Duration::from_secs(5), |e| e.counter("baton_itac.store.authorizations_ended") == 1),
        "the canceled task's authorization was not ended in etcd"
    );
    let (_, code, state) = bank::approve(&fleet.bank, &link, "alice");
    let page = redirect(&a, &code, &state);
    assert_ne!(page.status, 200, "{}", page.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 0, "a canceled task's code was exchanged");
    let records = fleet.dump().into_iter().filter(|(_, value)| value != b"used").count();
    assert_eq!(records, 0, "the canceled task's record is still in etcd");
}

/// What an agent's answer changes in etcd is there before the answer
/// reaches the client: the token moved to the agent's own task (blocking
/// or streamed), and the record of a task the agent ended deleted. So the
/// message sent the moment the answer arrives, on any other replica,
/// carries the token; a message in the ended task finds none.
#[test]
fn the_message_sent_the_moment_an_answer_arrives_finds_what_the_answer_changed_on_every_replica() {
    let fleet = Fleet::start();
    let replicas: Vec<Envoy> = (0..3).map(|_| fleet.replica()).collect();
    let records = |fleet: &Fleet| fleet.dump().into_iter().filter(|(_, value)| value != b"used").count();
    let rounds: usize = 8;
    for round in 0..rounds {
        let streamed = round % 2 == 1;
        let (a, b, c) = (&replicas[round % 3], &replicas[(round + 1) % 3], &replicas[(round + 2) % 3]);
        let (task, code, state) = fleet.challenge_and_approve(a);
        let page = redirect(b, &code, &state);
        assert_eq!(page.status, 200, "{}", page.body_str());
        // The message in the gateway's task, on A or on C (which neither
        // named the task nor kept the token): the agent names its own.
        let (a, c) = if round % 4 < 2 { (a, c) } else { (c, a) };
        let agent_task = if streamed {
            let events = stream(a, "alice", &task, true);
            assert_eq!(events[1]["result"]["status"]["state"], "input-required", "{events:?}");
            events[0]["result"]["id"].as_str().unwrap().to_string()
        } else {
            let answer = post(a, "alice", Some(&task));
            assert_eq!(answer.status, 200, "{}", answer.body_str());
            body_json(&answer)["result"]["id"].as_str().unwrap().to_string()
        };
        assert_ne!(agent_task, task, "the gateway's task id reached the agent");
        // At once, on C and on B: the token, not a challenge.
        for other in [c, b] {
            let next = post(other, "alice", Some(&agent_task));
            assert_eq!(next.status, 200, "{}", next.body_str());
            assert!(
                !next.body_str().contains("authorizationUrl"),
                "round {round} (streamed: {streamed}): challenged again: {}",
                next.body_str()
            );
        }
        assert_eq!(records(&fleet), 2, "the agent's task's record and gate only");
        // The agent ends the task (on C): its record is gone from etcd when
        // alice has the answer.
        if streamed {
            let events = stream(c, "alice", &agent_task, false);
            assert_eq!(events[1]["result"]["status"]["state"], "completed", "{events:?}");
        } else {
            let done = post_with(c, "alice", Some(&agent_task), false);
            assert_eq!(body_json(&done)["result"]["status"]["state"], "completed", "{}", done.body_str());
        }
        assert_eq!(records(&fleet), 0, "round {round}: the ended task's record is still in etcd");
    }
    // Every message that reached the agent carried a bank token; one code
    // exchange per authorization; nothing failed to be written.
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), rounds * 4);
    for request in &seen {
        let token = request.header("authorization").unwrap().strip_prefix("Bearer ").unwrap();
        let claims = mock_idp::decode_claims_unverified(token).unwrap();
        assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("alice"), Some("bank-api")));
    }
    assert_eq!(fleet.bank.calls(Endpoint::Token), rounds as u64);
    for replica in &replicas {
        assert_eq!(replica.counter("baton_itac.store.write_failed"), 0);
    }
    let challenges: u64 = replicas.iter().map(|replica| replica.counter("baton_itac.challenges")).sum();
    assert_eq!(challenges, rounds as u64, "one challenge per authorization, none again");
}

/// Three replicas behind a round-robin balancer, as a Kubernetes Service
/// puts them: the challenge, the bank's redirect and the next message each
/// land on another replica, and every later message, wherever it lands,
/// carries alice's bank token.
#[test]
fn through_a_round_robin_balancer_each_step_lands_on_another_replica_and_the_round_trip_completes() {
    let fleet = Fleet::start();
    let replicas: Vec<Envoy> = (0..3).map(|_| fleet.replica()).collect();
    let addrs: Vec<_> = replicas.iter().map(Envoy::addr).collect();
    let balancer = Envoy::start(&EnvoySpec::balancer(&addrs)).unwrap_or_else(|e| panic!("{e}"));
    let served = |counter: &str| -> Vec<u64> { replicas.iter().map(|r| r.counter(counter)).collect() };
    let one_of = |counts: Vec<u64>| -> usize {
        assert_eq!(counts.iter().sum::<u64>(), 1, "{counts:?}");
        counts.iter().position(|count| *count == 1).unwrap()
    };

    let (task, code, state) = fleet.challenge_and_approve(&balancer);
    let challenged = one_of(served("baton_itac.challenges"));
    let page = redirect(&balancer, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    let exchanged = one_of(served("baton_itac.codes_exchanged"));
    assert_ne!(challenged, exchanged, "the redirect landed on the replica that challenged");
    let answer = post(&balancer, "alice", Some(&task));
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    assert!(!answer.body_str().contains("authorizationUrl"), "challenged again: {}", answer.body_str());
    let injected = one_of(served("baton_itac.tokens_injected"));
    assert!(injected != challenged && injected != exchanged, "three steps, three replicas");

    // Six more messages in the agent's task: two on each replica, each with
    // the token, none challenged, one code exchange in all.
    let agent_task = body_json(&answer)["result"]["id"].as_str().unwrap().to_string();
    assert_ne!(agent_task, task, "the gateway's task id reached the agent");
    let token = fleet.agent.requests()[0].header("authorization").unwrap().to_string();
    for _ in 0..6 {
        let next = post(&balancer, "alice", Some(&agent_task));
        assert_eq!(next.status, 200, "{}", next.body_str());
        assert!(!next.body_str().contains("authorizationUrl"), "challenged again: {}", next.body_str());
    }
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 7);
    assert!(seen.iter().all(|request| request.header("authorization") == Some(token.as_str())));
    assert!(
        served("baton_itac.tokens_injected").iter().all(|count| *count >= 2),
        "{:?}",
        served("baton_itac.tokens_injected")
    );
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1, "one code exchange in all");
}

#[test]
fn a_task_the_agent_completes_on_one_replica_has_its_token_deleted_from_etcd() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.replica(), fleet.replica());
    // A task the client named: challenged on A, authorized on B.
    let challenge = post(&a, "alice", Some("t-9"));
    assert_eq!(challenge.status, 200, "{}", challenge.body_str());
    let url = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let (_, code, state) = bank::approve(&fleet.bank, &url, "alice");
    assert_eq!(redirect(&b, &code, &state).status, 200);
    assert_eq!(fleet.dump().len(), 3, "the single-use mark, alice's record and the task's gate");

    // Her last message lands on A, with the token B kept; the agent
    // completes the task, and A deletes the record from etcd before the
    // answer goes on.
    let answer = post_with(&a, "alice", Some("t-9"), false);
    assert_eq!(answer.status, 200, "{}", answer.body_str());
    assert_eq!(body_json(&answer)["result"]["status"]["state"], "completed");
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("authorization").is_some_and(|value| value.starts_with("Bearer ")));
    assert_eq!(fleet.dump().len(), 1, "alice's record or the task's gate is still in etcd");
    assert_eq!(a.counter("baton_itac.tasks_ended"), 1);
}

#[test]
fn a_replica_restarted_between_the_challenge_and_the_redirect_serves_it() {
    let fleet = Fleet::start();
    let a = fleet.replica();
    let (_, code, state) = fleet.challenge_and_approve(&a);
    drop(a);
    let restarted = fleet.replica();
    let page = redirect(&restarted, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert_eq!(restarted.counter("baton_itac.codes_exchanged"), 1);
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1);
}

#[test]
fn with_etcd_down_the_redirect_is_503_and_nothing_is_exchanged_until_it_is_back() {
    let mut fleet = Fleet::start();
    let (a, b) = (fleet.replica(), fleet.replica());
    let (_, code, state) = fleet.challenge_and_approve(&a);
    fleet.etcd.kill();

    let page = redirect(&b, &code, &state);
    assert_eq!(page.status, 503, "{}", page.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 0, "a code was exchanged without its single use agreed");
    assert!(fleet.agent.requests().is_empty());
    assert!(b.counter("baton_itac.store.unavailable") >= 1);
    assert!(!b.logs().contains(&state) && !b.logs().contains(&code), "the log shows the state or the code");

    // etcd back: the same redirect goes through, once.
    fleet.etcd.restart().unwrap_or_else(|e| panic!("{e}"));
    let page = redirect(&b, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1);
    assert_eq!(redirect(&a, &code, &state).status, 400, "used once, on another replica too");
}

#[test]
fn with_etcd_frozen_the_redirect_is_503_within_the_store_timeout_and_goes_through_after() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.replica(), fleet.replica());
    let (_, code, state) = fleet.challenge_and_approve(&a);
    fleet.etcd.freeze().unwrap_or_else(|e| panic!("{e}"));

    let started = std::time::Instant::now();
    let page = redirect(&b, &code, &state);
    let waited = started.elapsed();
    fleet.etcd.thaw().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status, 503, "{}", page.body_str());
    // timeoutMs is 1000: the filter gives up then, not at Envoy's own limits.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    assert_eq!(fleet.bank.calls(Endpoint::Token), 0, "a code was exchanged without its single use agreed");
    assert!(b.counter("baton_itac.store.unavailable") >= 1);

    let page = redirect(&b, &code, &state);
    assert_eq!(page.status, 200, "{}", page.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1);
    assert_eq!(redirect(&a, &code, &state).status, 400, "used once, on another replica too");
}

#[test]
fn one_etcd_member_killed_mid_flow_costs_a_wait_and_never_a_second_use() {
    let mut fleet = Fleet::start_on_three_members();
    let (a, b) = (fleet.replica(), fleet.replica());
    let mut unavailable = Vec::new();
    for round in 0..6 {
        let (_, code, state) = fleet.challenge_and_approve(&a);
        if round == 2 {
            fleet.more_members[0].kill();
        }
        // The redirect lands on the other replica. While the cluster
        // elects a leader or Envoy's health check has not yet seen the
        // dead member, it is 503 (nothing exchanged), and the user retries.
        let started = std::time::Instant::now();
        let mut page = redirect(&b, &code, &state);
        while page.status == 503 && started.elapsed() < Duration::from_secs(10) {
            unavailable.push(round);
            assert_eq!(fleet.bank.calls(Endpoint::Token), round, "round {round}: exchanged on a 503");
            std::thread::sleep(Duration::from_millis(250));
            page = redirect(&b, &code, &state);
        }
        assert_eq!(
            page.status,
            200,
            "round {round}: {}\n{}",
            page.body_str(),
            b.admin_get("/stats?filter=etcd").map_or_else(|e| e, |r| r.body_str())
        );
        assert_eq!(
            fleet.bank.calls(Endpoint::Token),
            round + 1,
            "round {round}: one exchange per authorization"
        );
        // A replay is refused on the other replica: as used (400), or 503
        // while that replica still picks the dead member; never exchanged.
        let replay = redirect(&a, &code, &state).status;
        assert!(replay == 400 || replay == 503, "round {round}: a replay got {replay}");
        assert_eq!(fleet.bank.calls(Endpoint::Token), round + 1, "round {round}: a replay was exchanged");
    }
    eprintln!("redirects answered 503 while a member was down, by round: {unavailable:?}");
    assert!(
        unavailable.iter().all(|round| *round == 2),
        "503s outside the round of the kill: {unavailable:?}"
    );
    assert_eq!(b.counter("baton_itac.codes_exchanged"), 6);
}
