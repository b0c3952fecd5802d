//! Finding 7 and its siblings: one caller cannot push out anyone else's
//! pending authorizations or stored tokens. Only verified users create
//! state; each may hold a bounded number; pending authorizations and stored
//! tokens live apart; a full store refuses new entries rather than evict.

use std::sync::Arc;

use baton_harness::body_json;
use serde_json::Value;

use crate::world::{TransferGateway, auth_challenge, transfer};

#[test]
fn a_flood_of_challenges_pushes_out_none_of_alices_authorizations() {
    let gateway = Arc::new(TransferGateway::start());
    // alice holds a stored token in one task and ten pending authorizations.
    let alice_task = gateway.authorized_task("alice");
    let mut alice_links = Vec::new();
    for n in 0..10 {
        let challenge = gateway.send_as("alice", &transfer(Some(&format!("alice-task-{n}"))));
        alice_links.push(auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string());
    }
    // 1,500 challenges from 150 other verified users, from four clients.
    let tokens: Arc<Vec<String>> = Arc::new((0..150).map(|n| gateway.token(&format!("user-{n}"))).collect());
    let threads: Vec<_> = (0..4)
        .map(|client| {
            let (gateway, tokens) = (Arc::clone(&gateway), Arc::clone(&tokens));
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for n in (client..1500).step_by(4) {
                    let bearer = format!("Bearer {}", tokens[n % tokens.len()]);
                    statuses.push(gateway.post(Some(&bearer), &transfer(None), &[]).status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );

    // Every one of alice's links still works, and her token is still there.
    for (n, link) in alice_links.iter().enumerate() {
        let hops = gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), link, "alice");
        let page = &hops.last().unwrap().response;
        assert_eq!(page.status, 200, "alice's authorization {n} was lost: {}", page.body_str());
    }
    let answer = gateway.send_as("alice", &transfer(Some(&alice_task)));
    assert_eq!(
        body_json(&answer)["result"]["status"]["state"],
        Value::from("completed"),
        "{}",
        answer.body_str()
    );
}

#[test]
fn one_user_holds_a_bounded_number_of_pending_authorizations() {
    let gateway = TransferGateway::start();
    let mut links = Vec::new();
    for n in 0..40 {
        let challenge = gateway.send_as("mallory", &transfer(Some(&format!("m-{n}"))));
        links.push(auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string());
    }
    // The shipped limit is 16 per user: her oldest went, her newest stay.
    let usable = |link: &String| {
        let hops = gateway.open_link_as(&mut baton_harness::RedirectWalk::new(), link, "mallory");
        hops.last().unwrap().response.status == 200
    };
    assert!(!usable(&links[0]), "her first authorization is still held");
    assert!(usable(&links[39]), "her newest authorization was lost");
}
