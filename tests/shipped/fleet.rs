//! `envoy-configs/in-task-auth-code.yaml` with a `store` section on three
//! Envoy replicas behind a round-robin balancer (issue 16), the browser
//! sign-in (`userBinding.primaryLogin`) included: the link, the sign-in's
//! redirect and the bank's each land on another replica, and the binding
//! holds across them: a link that reached someone else stops at the
//! sign-in and ends the authorization on every replica.

use baton_harness::{RedirectWalk, body_json};
use mock_idp::Endpoint;
use serde_json::json;

use crate::fleet_world::Fleet;
use crate::world::{auth_challenge, message, open_link, transfer};

#[test]
fn the_browser_sign_in_holds_across_three_replicas_behind_a_balancer() {
    let fleet = Fleet::start();
    let challenge = fleet.send_as("alice", &transfer(None));
    assert_eq!(challenge.status, 200, "{}", challenge.body_str());
    let task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
    let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();

    // alice's browser: the link, the sign-in's redirect and the bank's,
    // each through the balancer.
    let hops = open_link(&mut RedirectWalk::new(), &link, "alice", &[fleet.idp.port(), fleet.bank.port()]);
    let page = &hops.last().unwrap().response;
    assert_eq!(page.status, 200, "{}", page.body_str());
    let started = fleet.served_by_each("baton_itac.sign_ins_started");
    let completed = fleet.served_by_each("baton_itac.sign_ins_completed");
    let exchanged = fleet.served_by_each("baton_itac.codes_exchanged");
    let on = |counts: &[u64]| counts.iter().position(|count| *count > 0).unwrap();
    assert_ne!(on(&started), on(&completed), "the sign-in's redirect landed on the replica of the link");
    assert_eq!(
        (fleet.total("baton_itac.sign_ins_completed"), fleet.total("baton_itac.codes_exchanged")),
        (1, 2)
    );
    assert_eq!(
        exchanged.iter().filter(|count| **count > 0).count(),
        2,
        "sign-in and bank on two replicas: {exchanged:?}"
    );
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1);

    // Her next messages, wherever they land, carry the bank's token: the
    // first in the gateway's task, the others in the task the agent made
    // of it (the gateway's task is over once the agent has its own).
    let mut task = task;
    for _ in 0..3 {
        let parts = json!([{"kind": "text", "text": "send 250 EUR to bob"},
                           {"kind": "data", "data": {"operation": "transfer", "amount": 250, "to": "bob", "keepOpen": true}}]);
        let answer = fleet.send_as("alice", &message(Some(&task), parts));
        assert_eq!(answer.status, 200, "{}", answer.body_str());
        assert!(!answer.body_str().contains("authorizationUrl"), "challenged again: {}", answer.body_str());
        task = body_json(&answer)["result"]["id"].as_str().unwrap().to_string();
    }
    let seen = fleet.agent.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|request| request.header("authorization").is_some_and(|v| v.starts_with("Bearer ")))
    );

    // Replayed, the same link and hops are refused on every replica.
    let again = open_link(&mut RedirectWalk::new(), &link, "alice", &[fleet.idp.port(), fleet.bank.port()]);
    assert_ne!(again.last().unwrap().response.status, 200);
    assert_eq!(fleet.bank.calls(Endpoint::Token), 1, "a replay reached the bank");
}

#[test]
fn a_link_that_reached_someone_else_stops_at_the_sign_in_on_every_replica() {
    let fleet = Fleet::start();
    let challenge = fleet.send_as("bob", &transfer(None));
    let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    // alice opens bob's link: she signs in as herself and is stopped.
    let hops = open_link(&mut RedirectWalk::new(), &link, "alice", &[fleet.idp.port(), fleet.bank.port()]);
    let last = &hops.last().unwrap().response;
    assert_eq!(last.status, 403, "{}", last.body_str());
    assert!(
        hops.iter().all(|hop| !hop.url.contains(&format!("127.0.0.1:{}/authorize", fleet.bank.port()))),
        "the bank was named to alice's browser"
    );
    assert!(fleet.replicas.iter().any(|replica| replica.wait_for(std::time::Duration::from_secs(5), |e| {
        e.counter("baton_itac.store.authorizations_ended") == 1
    })));
    // bob's own browser then: signed in, but the authorization is over.
    let hops = open_link(&mut RedirectWalk::new(), &link, "bob", &[fleet.idp.port(), fleet.bank.port()]);
    let last = &hops.last().unwrap().response;
    assert_ne!(last.status, 200, "{}", last.body_str());
    assert_eq!(fleet.bank.calls(Endpoint::Token), 0, "nothing was exchanged at the bank");
}
