//! `envoy-configs/in-task-auth-code.yaml` with a `store` section on three
//! Envoy replicas behind a round-robin balancer (issue 16), the browser
//! sign-in (`userBinding.primaryLogin`) included: the link, the sign-in's
//! redirect and the bank's each land on another replica, and the binding
//! holds across them: a link that reached someone else stops at the
//! sign-in and ends the authorization on every replica.

use baton_harness::{Envoy, EnvoySpec, Etcd, RedirectWalk, body_json, sealing_secret, workspace_root};
use mock_idp::{Endpoint, MockIdp, MockIdpConfig};
use serde_json::{Value, json};

use crate::world::{BANK_SECRET, auth_challenge, open_link, redirecting_to, transfer, user_token};

struct Fleet {
    idp: MockIdp,
    bank: MockIdp,
    agent: echo_backend::EchoBackend,
    _etcd: Etcd,
    replicas: Vec<Envoy>,
    balancer: Envoy,
}

impl Fleet {
    /// The shipped file, its ports mapped, its filter given `store`, the
    /// listener on a port of its own per replica; the redirect URIs name
    /// the balancer's port, which is the only one browsers see.
    fn start() -> Fleet {
        let port = baton_harness::free_port().unwrap();
        let text = std::fs::read_to_string(workspace_root().join("integration/bank-idp.json")).unwrap();
        let mut bank_config: MockIdpConfig = serde_json::from_str(&text).unwrap();
        bank_config.port = 0;
        let idp = MockIdp::start(redirecting_to(MockIdpConfig::default(), port)).unwrap();
        let bank = MockIdp::start(redirecting_to(bank_config, port)).unwrap();
        let agent = echo_backend::EchoBackend::start_a2a_agent().unwrap();
        let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e}"));
        let shipped = baton_harness::ShippedConfig::new("in-task-auth-code.yaml")
            .port(9000, idp.port())
            .port(9010, bank.port())
            .port(9011, agent.port())
            .port(10003, port)
            .text()
            .unwrap();
        let store = json!({"etcd": {"cluster": "etcd", "authority": etcd.addr().to_string(), "timeoutMs": 1000},
                           "sealingKeys": [{"id": "k1", "secretEnv": "BATON_STORE_K1"}], "currentKey": "k1"});
        let with_store = shipped
            .replace(r#""identityHeader": "x-baton-user","#, &format!(r#""store": {store}, "identityHeader": "x-baton-user","#))
            .replace("host_env_keys: [BATON_BANK_SECRET, BATON_FINPORT_SECRET]", "host_env_keys: [BATON_BANK_SECRET, BATON_FINPORT_SECRET, BATON_STORE_K1]")
            .replace(&format!("port_value: {port}}}"), "port_value: 0}")
            .replace("  clusters:\n", &format!(
                "  clusters:\n  - {{name: etcd, type: STATIC, connect_timeout: 1s, load_assignment: {{cluster_name: etcd, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}}}\n",
                etcd.addr().port()
            ));
        assert!(
            with_store.contains("\"store\"")
                && with_store.contains("BATON_STORE_K1]")
                && with_store.contains("name: etcd")
        );
        let dir = std::env::temp_dir().join(format!("baton-fleet-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in-task-auth-code.yaml");
        std::fs::write(&path, with_store).unwrap();
        let env = vec![
            ("BATON_BANK_SECRET".to_string(), BANK_SECRET.to_string()),
            ("BATON_FINPORT_SECRET".to_string(), mock_idp::DEMO_GATEWAY_SECRET.to_string()),
            ("BATON_STORE_K1".to_string(), sealing_secret().unwrap()),
        ];
        let replicas: Vec<Envoy> = (0..3)
            .map(|_| {
                Envoy::start_file_with_env(&path, &workspace_root(), 1, &env)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let addrs: Vec<_> = replicas.iter().map(Envoy::addr).collect();
        let balancer =
            Envoy::start(&EnvoySpec::balancer(&addrs).listen_on(port)).unwrap_or_else(|e| panic!("{e}"));
        for replica in &replicas {
            assert!(
                replica.wait_for(std::time::Duration::from_secs(10), |e| e
                    .counter("baton_itac.jwks.fetch_success")
                    == 3),
                "a replica did not fetch the IdPs' keys"
            );
        }
        Fleet { idp, bank, agent, _etcd: etcd, replicas, balancer }
    }

    fn send_as(&self, user: &str, body: &Value) -> http_kit::ClientResponse {
        let request = http_kit::ClientRequest::post("/", "application/json", body.to_string().into_bytes())
            .header("authorization", &format!("Bearer {}", user_token(&self.idp, user)));
        self.balancer.send(&request)
    }

    fn total(&self, counter: &str) -> u64 {
        self.replicas.iter().map(|replica| replica.counter(counter)).sum()
    }

    fn served_by_each(&self, counter: &str) -> Vec<u64> {
        self.replicas.iter().map(|replica| replica.counter(counter)).collect()
    }
}

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

    // Her next messages, wherever they land, carry the bank's token.
    for _ in 0..3 {
        let answer = fleet.send_as("alice", &transfer(Some(&task)));
        assert_eq!(answer.status, 200, "{}", answer.body_str());
        assert!(!answer.body_str().contains("authorizationUrl"), "challenged again: {}", answer.body_str());
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
