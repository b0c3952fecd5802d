//! `make demo` as a test: runs the demo program (real Envoys, both mock
//! IdPs, the fixed ports of `envoy-configs/`) and checks the identity chain
//! it prints, hop by hop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use baton_harness::workspace_root;

/// The printed trace: hop number -> (route, filter, decision, upstream claims).
fn hops(output: &str) -> Vec<Vec<String>> {
    let table = output.split("the identity chain, hop by hop:").nth(1).expect("the demo printed its trace");
    table
        .lines()
        .filter(|line| line.trim_start().starts_with("hop "))
        .map(|line| line.split(" | ").skip(1).map(|cell| cell.trim().to_string()).collect())
        .collect()
}

#[test]
fn the_demo_walks_the_whole_identity_chain() {
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "-p", "baton-demo"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let hops = hops(&stdout);
    let expected: [[&str; 4]; 9] = [
        [
            "User -> Agent Broker",
            "claim-enforcement (ingress)",
            "200 verified, identity set",
            "sub=alice aud=finport-api act=- scope=\"openid portfolio:read\" (the user's token) x-user-id=alice",
        ],
        [
            "Agent Broker -> Portfolio Agent",
            "obo-credential-injection (token exchange)",
            "200 exchanged",
            "sub=alice aud=portfolio-agent act=agent-broker scope=\"portfolio:read\"",
        ],
        [
            "Agent Broker -> Market Data Agent",
            "obo-credential-injection (client credentials)",
            "200 broker's own token",
            "sub=agent-broker aud=market-data act=- scope=\"quotes:read\"",
        ],
        [
            "Portfolio Agent -> Ledger API",
            "obo-credential-injection (token exchange)",
            "200 exchanged again",
            "sub=alice aud=ledger-api act=portfolio-agent<-agent-broker scope=\"portfolio:read\"",
        ],
        [
            "Agent Broker -> Transfer Agent",
            "in-task-auth-code (A2A)",
            "auth-required, agent not called",
            "no token: a challenge for the bank",
        ],
        [
            "Agent Broker -> Transfer Agent",
            "in-task-auth-code (A2A)",
            "input-required, bank token injected",
            "iss=bank sub=alice aud=bank-api act=- scope=\"transfers:write\"",
        ],
        [
            "Agent Broker -> Transfer Agent",
            "in-task-auth-code (A2A), same task",
            "completed, no new challenge",
            "iss=bank sub=alice aud=bank-api act=- scope=\"transfers:write\"",
        ],
        [
            "bob's broker -> alice's task",
            "in-task-auth-code (A2A)",
            "auth-required, agent not called",
            "no token: alice's bank token stays hers",
        ],
        [
            "alice's browser -> bob's link",
            "in-task-auth-code (sign-in)",
            "403, the bank never asked",
            "no token: alice signed in, bob asked",
        ],
    ];
    assert_eq!(hops.len(), expected.len(), "{stdout}");
    for (number, (seen, want)) in hops.iter().zip(expected).enumerate() {
        assert_eq!(seen, &want.map(String::from).to_vec(), "hop {}", number + 1);
    }

    // The refusals along the way, and no raw token anywhere.
    for refusal in [
        r#"Bearer realm="finport""#,
        r#"error="invalid_token""#,
        r#"error="insufficient_scope""#,
        r#"error="insufficient_user_authentication""#,
        "the caller's own token reached the upstream: no",
        r#"the Portfolio Agent answered with alice's portfolio: [{"shares":120,"symbol":"ACME"}"#,
        "asking it for bob's portfolio with alice's token: 403",
        "gateway      GET /a2a/oauth/start -> 302",
        "FinPort IdP  GET /authorize -> 302",
        "gateway      GET /a2a/oauth/signed-in -> 302",
        "bank         GET /authorize -> 302",
        "gateway      GET /a2a/oauth/callback -> 200",
        "gateway      GET /a2a/oauth/signed-in -> 403",
        "You signed in as another user than the one who asked for this authorization. Nothing was authorized.",
    ] {
        assert!(stdout.contains(refusal), "missing {refusal:?}:\n{stdout}");
    }
    assert!(!stdout.contains("the caller's own token reached the upstream: YES"));
    assert!(!stdout.contains("eyJ"), "a raw token was printed");
    assert!(stdout.contains("stopped the Envoys"));
}
