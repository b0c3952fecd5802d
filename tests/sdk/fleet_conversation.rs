//! The SDK conversation on three replicas of the shipped gateway sharing
//! a store (issue 16), behind a round-robin balancer, as a Kubernetes
//! Service puts them: the official A2A SDK client and agent, every call and
//! every hop of the browser landing on whichever replica comes next. The
//! conversation must go exactly as on one Envoy: one challenge, the task
//! the gateway named answered for wherever its calls land, one bank
//! exchange, and the bank's token with every message of the agent's task.

use serde_json::{Value, json};

use crate::conversation::{bearer_claims, challenge_of, last_state, task_of, transfer};
use crate::fleet_world::Fleet;
use crate::sdk::{SdkAgent, a2a_call, body, header};
use crate::world::{open_link, user_token};

struct World {
    agent: SdkAgent,
    fleet: Fleet,
}

impl World {
    fn start() -> World {
        let agent = SdkAgent::start();
        let fleet = Fleet::in_front_of(agent.port());
        World { agent, fleet }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.fleet.port)
    }

    fn call(&self, user: &str, version: &str, stream: bool, spec: Value) -> Value {
        a2a_call(&self.url(), Some(user_token(&self.fleet.idp, user)), version, stream, spec)
    }

    fn send(&self, user: &str, version: &str, stream: bool, mut message: Value) -> Value {
        message["op"] = json!("send");
        self.call(user, version, stream, message)
    }

    /// How many replicas counted `counter` at least once.
    fn replicas_counting(&self, counter: &str) -> usize {
        self.fleet.served_by_each(counter).iter().filter(|count| **count > 0).count()
    }
}

fn round_trip_on_replicas(version: &str, stream: bool) {
    let w = World::start();
    // 1. A transfer: challenged in a task the gateway names.
    let challenge = w.send("alice", version, stream, transfer());
    assert_eq!(challenge.get("error"), None, "{challenge}");
    assert_eq!(last_state(&challenge), "TASK_STATE_AUTH_REQUIRED", "{challenge}");
    let (gateway_task, context) = task_of(&challenge);
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    // GetTask, twice (the balancer sends each to the next replica): the
    // gateway's task, waiting, with the same link; the agent hears nothing.
    for _ in 0..2 {
        let got = w.call("alice", version, false, json!({"op": "get", "task": gateway_task}));
        assert_eq!(got.get("error"), None, "{got}");
        assert_eq!(got["events"][0]["task"]["id"], gateway_task.as_str());
        assert_eq!(last_state(&got), "TASK_STATE_AUTH_REQUIRED");
        assert_eq!(challenge_of(&got)["authorizationUrl"], link.as_str(), "{got}");
    }
    assert!(w.agent.calls().is_empty());
    // 2. Her browser: sign-in at FinPort, then the bank, through the
    //    balancer.
    let hops = open_link(
        &mut baton_harness::RedirectWalk::new(),
        &link,
        "alice",
        &[w.fleet.idp.port(), w.fleet.bank.port()],
    );
    assert_eq!(hops.last().unwrap().response.status, 200, "{}", hops.last().unwrap().response.body_str());
    // 3. "continue": the agent gets the bank's token, and never the
    //    gateway's task id.
    let go_on =
        json!({"text": "continue", "task": gateway_task, "context": context, "data": {"keepOpen": true}});
    let done = w.send("alice", version, stream, go_on);
    assert_eq!(done.get("error"), None, "{done}");
    assert_eq!(last_state(&done), "TASK_STATE_INPUT_REQUIRED", "{done}");
    let (agent_task, _) = task_of(&done);
    assert_ne!(agent_task, gateway_task);
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(bearer_claims(&calls[0])["aud"], "bank-api");
    assert_eq!(bearer_claims(&calls[0])["sub"], "alice");
    assert!(
        body(&calls[0])["params"]["message"].get("taskId").is_none(),
        "the agent heard of the gateway's task"
    );
    // 4. Follow-ups in the agent's task, wherever they land: the bank's
    //    token each time; the last completes the task.
    for text in ["and 100 more", "and 50 more"] {
        let again = w.send(
            "alice",
            version,
            stream,
            json!({"text": text, "task": agent_task, "data": {"keepOpen": true}}),
        );
        assert_eq!(last_state(&again), "TASK_STATE_INPUT_REQUIRED", "{again}");
    }
    // bob, in alice's task, wherever his message lands: challenged for
    // himself; nothing of his reaches the agent.
    let bob = w.send("bob", version, stream, json!({"text": "me too", "task": agent_task}));
    assert_eq!(last_state(&bob), "TASK_STATE_AUTH_REQUIRED", "{bob}");
    assert_eq!(w.agent.calls().len(), 3);
    let last = w.send("alice", version, stream, json!({"text": "that's all", "task": agent_task}));
    assert_eq!(last_state(&last), "TASK_STATE_COMPLETED", "{last}");
    let calls = w.agent.calls();
    assert_eq!(calls.len(), 4);
    for call in &calls {
        assert_eq!(bearer_claims(call)["aud"], "bank-api", "{call}");
        assert_eq!(header(call, "x-baton-user").as_deref(), Some("alice"));
    }
    // One challenge and one bank exchange in all; the messages with the
    // token were served by more than one replica.
    assert_eq!(w.fleet.total("baton_itac.challenges"), 2, "alice's, and bob's");
    assert_eq!(w.fleet.bank.calls(mock_idp::Endpoint::Token), 1);
    assert!(
        w.replicas_counting("baton_itac.tokens_injected") >= 2,
        "{:?}",
        w.fleet.served_by_each("baton_itac.tokens_injected")
    );
    assert_eq!(w.fleet.total("baton_itac.store.write_failed"), 0);
}

#[test]
fn v10_blocking_round_trip_on_three_replicas() {
    round_trip_on_replicas("1.0", false);
}

#[test]
fn v03_streaming_round_trip_on_three_replicas() {
    round_trip_on_replicas("0.3", true);
}

#[test]
fn cancel_on_one_replica_ends_the_authorization_on_all() {
    let w = World::start();
    let challenge = w.send("alice", "1.0", false, transfer());
    let (task, _) = task_of(&challenge);
    let link = challenge_of(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let canceled = w.call("alice", "0.3", false, json!({"op": "cancel", "task": task}));
    assert_eq!(canceled.get("error"), None, "{canceled}");
    assert_eq!(last_state(&canceled), "TASK_STATE_CANCELED");
    assert!(w.fleet.replicas.iter().any(|replica| {
        replica.wait_for(std::time::Duration::from_secs(5), |e| {
            e.counter("baton_itac.store.authorizations_ended") == 1
        })
    }));
    // Its link no longer completes, whichever replica the hops reach.
    let hops = open_link(
        &mut baton_harness::RedirectWalk::new(),
        &link,
        "alice",
        &[w.fleet.idp.port(), w.fleet.bank.port()],
    );
    assert_ne!(hops.last().unwrap().response.status, 200);
    assert!(w.agent.calls().is_empty());
    assert_eq!(w.fleet.bank.calls(mock_idp::Endpoint::Token), 0);
}
