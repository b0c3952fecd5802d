//! `envoy-configs/in-task-auth-code.yaml` with a `store` section on three
//! Envoy replicas behind a round-robin Envoy balancer (issue 16), in front
//! of the echo A2A agent or another agent: the world of
//! `tests/shipped/fleet.rs` and of the SDK conversation on replicas.
#![allow(dead_code)]

use baton_harness::{Envoy, EnvoySpec, Etcd, sealing_secret, workspace_root};
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::{Value, json};

use crate::world::{BANK_SECRET, redirecting_to, user_token};

pub struct Fleet {
    pub idp: MockIdp,
    pub bank: MockIdp,
    /// The echo agent (routed to unless another agent's port was given).
    pub agent: echo_backend::EchoBackend,
    _etcd: Etcd,
    pub replicas: Vec<Envoy>,
    pub balancer: Envoy,
    /// The balancer's port: the only one clients and browsers see.
    pub port: u16,
}

impl Fleet {
    /// In front of the echo agent.
    pub fn start() -> Fleet {
        Self::routed_to(None)
    }

    /// In front of the A2A agent listening on `agent_port`.
    pub fn in_front_of(agent_port: u16) -> Fleet {
        Self::routed_to(Some(agent_port))
    }

    /// The shipped file, its ports mapped, its filter given `store`, the
    /// listener on a port of its own per replica; the redirect URIs name
    /// the balancer's port, which is the only one browsers see.
    fn routed_to(agent_port: Option<u16>) -> Fleet {
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
            .port(9011, agent_port.unwrap_or(agent.port()))
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
        Fleet { idp, bank, agent, _etcd: etcd, replicas, balancer, port }
    }

    pub fn send_as(&self, user: &str, body: &Value) -> http_kit::ClientResponse {
        let request = http_kit::ClientRequest::post("/", "application/json", body.to_string().into_bytes())
            .header("authorization", &format!("Bearer {}", user_token(&self.idp, user)));
        self.balancer.send(&request)
    }

    pub fn total(&self, counter: &str) -> u64 {
        self.replicas.iter().map(|replica| replica.counter(counter)).sum()
    }

    pub fn served_by_each(&self, counter: &str) -> Vec<u64> {
        self.replicas.iter().map(|replica| replica.counter(counter)).collect()
    }
}
