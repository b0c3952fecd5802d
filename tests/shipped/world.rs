//! The shipped configurations started with the IdPs and upstreams they
//! expect, on free loopback ports.
#![allow(dead_code)]

use std::time::Duration;

use baton_harness::{Envoy, Hop, RedirectWalk, ShippedConfig, body_json};
use echo_backend::EchoBackend;
use http_kit::{ClientRequest, ClientResponse};
use mock_idp::{MockIdp, MockIdpConfig};
use serde_json::{Value, json};

pub use crate::bank::auth_challenge;

/// The audience of the users' tokens in the shipped configs.
pub const FINPORT_AUDIENCE: &str = "finport-api";

/// The users' IdP (FinPort's), on a free port.
pub fn finport_idp() -> MockIdp {
    MockIdp::start(MockIdpConfig::default()).expect("mock IdP starts")
}

/// A user's token as the FinPort IdP issues it (ES256, `at+jwt`, five
/// minutes).
pub fn user_token(idp: &MockIdp, user: &str) -> String {
    let mut claims = idp.standard_claims(user, FINPORT_AUDIENCE, 300);
    claims["scope"] = json!("openid portfolio:read");
    claims["client_id"] = json!("finport-app");
    idp.mint(claims)
}

/// `envoy-configs/in-task-auth-code.yaml` in front of an A2A agent, with the
/// FinPort IdP and the bank it names.
pub struct TransferGateway {
    pub idp: MockIdp,
    pub bank: MockIdp,
    pub agent: EchoBackend,
    pub envoy: Envoy,
    /// Where the gateway listens (its redirect URI names this port).
    pub port: u16,
}

/// The bank's secret for the gateway, as the shipped config reads it.
pub const BANK_SECRET: &str = "bank-demo-secret";

impl TransferGateway {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// With the bank's configuration (from `integration/bank-idp.json`)
    /// changed by `change`.
    pub fn start_with(change: impl FnOnce(&mut MockIdpConfig)) -> Self {
        Self::start_with_idps(|_| {}, change)
    }

    /// With Envoy's log level for every component at `level`.
    pub fn start_at_log_level(level: &str) -> Self {
        Self::start_as(|_| {}, |_| {}, level)
    }

    /// With the FinPort IdP's and the bank's configurations changed.
    pub fn start_with_idps(
        change_finport: impl FnOnce(&mut MockIdpConfig),
        change: impl FnOnce(&mut MockIdpConfig),
    ) -> Self {
        Self::start_as(change_finport, change, "info")
    }

    /// In front of the A2A agent listening on `agent_port` (instead of the
    /// echo agent, which is started but not routed to).
    pub fn start_in_front_of(agent_port: u16) -> Self {
        Self::start_routed(|_| {}, |_| {}, "info", Some(agent_port))
    }

    fn start_as(
        change_finport: impl FnOnce(&mut MockIdpConfig),
        change: impl FnOnce(&mut MockIdpConfig),
        log_level: &str,
    ) -> Self {
        Self::start_routed(change_finport, change, log_level, None)
    }

    fn start_routed(
        change_finport: impl FnOnce(&mut MockIdpConfig),
        change: impl FnOnce(&mut MockIdpConfig),
        log_level: &str,
        agent_port: Option<u16>,
    ) -> Self {
        let mut finport = MockIdpConfig::default();
        change_finport(&mut finport);
        let text = std::fs::read_to_string(baton_harness::workspace_root().join("integration/bank-idp.json"))
            .unwrap();
        let mut bank_config: MockIdpConfig = serde_json::from_str(&text).unwrap();
        bank_config.port = 0;
        change(&mut bank_config);
        // The gateway's port is in the IdPs' redirect URIs, so it is chosen
        // before Envoy binds it; another process may take it in between,
        // and then everything starts again on another port.
        for attempt in 1..=3 {
            let port = baton_harness::free_port().unwrap();
            let idp = MockIdp::start(redirecting_to(finport.clone(), port)).expect("mock IdP starts");
            let bank = MockIdp::start(redirecting_to(bank_config.clone(), port)).unwrap();
            let agent = EchoBackend::start_a2a_agent().unwrap();
            let started = ShippedConfig::new("in-task-auth-code.yaml")
                .port(9000, idp.port())
                .port(9010, bank.port())
                .port(9011, agent_port.unwrap_or(agent.port()))
                .port(10003, port)
                .env("BATON_BANK_SECRET", BANK_SECRET)
                .env("BATON_FINPORT_SECRET", mock_idp::DEMO_GATEWAY_SECRET)
                .log_level(log_level)
                .start();
            let envoy = match started {
                Ok(envoy) => envoy,
                Err(e) if attempt < 3 && e.contains("Address already in use") => continue,
                Err(e) => panic!("in-task-auth-code.yaml did not start: {e}"),
            };
            let gateway = TransferGateway { idp, bank, agent, envoy, port };
            // One fetch per provider: the bank's, and the sign-in's and the
            // users' at FinPort.
            assert!(
                gateway
                    .envoy
                    .wait_for(Duration::from_secs(10), |e| e.counter("baton_itac.jwks.fetch_success") == 3),
                "the gateway did not fetch both IdPs' keys"
            );
            return gateway;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A token of `user` from the FinPort IdP.
    pub fn token(&self, user: &str) -> String {
        user_token(&self.idp, user)
    }

    /// POSTs an A2A request with `authorization` (if any) and `headers`.
    pub fn post(
        &self,
        authorization: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> ClientResponse {
        self.post_to("/", authorization, body, headers)
    }

    /// As [`TransferGateway::post`], to `target` (path and query).
    pub fn post_to(
        &self,
        target: &str,
        authorization: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> ClientResponse {
        let mut request = ClientRequest::post(target, "application/json", body.to_string().into_bytes());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.envoy.send(&request)
    }

    /// `message/send` of `user` (by a token the IdP issued).
    pub fn send_as(&self, user: &str, body: &Value) -> ClientResponse {
        self.post(Some(&format!("Bearer {}", self.token(user))), body, &[])
    }

    /// A browser where `user` is the one who signs in (the mock IdPs
    /// auto-approve whoever `login_hint` names) opens `link`: every hop.
    pub fn open_link_as(&self, walk: &mut RedirectWalk, link: &str, user: &str) -> Vec<Hop> {
        open_link(walk, link, user, &[self.idp.port(), self.bank.port()])
    }

    /// `user` gets a challenge for a transfer, approves at the bank, and
    /// the browser comes back: the task the agent then created holds the
    /// bank's token. Returns the agent's task id.
    pub fn authorized_task(&self, user: &str) -> String {
        let challenge = self.send_as(user, &transfer(None));
        let gateway_task = body_json(&challenge)["result"]["id"].as_str().unwrap().to_string();
        let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
        let hops = self.open_link_as(&mut RedirectWalk::new(), &link, user);
        let page = &hops.last().unwrap().response;
        assert_eq!(page.status, 200, "{}", page.body_str());
        // The agent keeps its task open for more (a completed task takes
        // no more messages, and the gateway drops its token with it).
        let mut keep_open = transfer(Some(&gateway_task));
        keep_open["params"]["message"]["parts"][1]["data"]["keepOpen"] = json!(true);
        let answer = self.send_as(user, &keep_open);
        assert_eq!(
            body_json(&answer)["result"]["status"]["state"],
            "input-required",
            "{}",
            answer.body_str()
        );
        body_json(&answer)["result"]["id"].as_str().unwrap().to_string()
    }
}

/// A v0.3 `message/send` of a transfer, in `task` when given.
pub fn transfer(task: Option<&str>) -> Value {
    message(
        task,
        json!([{"kind": "text", "text": "send 250 EUR to bob"},
                         {"kind": "data", "data": {"operation": "transfer", "amount": 250, "to": "bob"}}]),
    )
}

/// A v0.3 `message/send` with these parts, in `task` when given.
pub fn message(task: Option<&str>, parts: Value) -> Value {
    let mut message = json!({"kind": "message", "role": "user", "messageId": "m-1", "parts": parts});
    if let Some(task) = task {
        message["taskId"] = json!(task);
        message["contextId"] = json!("ctx-1");
    }
    json!({"jsonrpc": "2.0", "id": "req-1", "method": "message/send", "params": {"message": message}})
}

/// The claims of the bearer token an upstream request carried.
pub fn bearer_claims(request: &http_kit::Request) -> Option<Value> {
    let token = request.header("authorization")?.strip_prefix("Bearer ")?;
    mock_idp::decode_claims_unverified(token)
}

/// `config` with the shipped gateway's redirect URIs on `port`.
/// A browser where `user` is the one who signs in at the mock IdPs on
/// `idp_ports` (they auto-approve whoever `login_hint` names) opens `link`:
/// every hop.
pub fn open_link(walk: &mut RedirectWalk, link: &str, user: &str, idp_ports: &[u16]) -> Vec<Hop> {
    let idps: Vec<String> = idp_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    walk.follow(link, 10, |url| {
        if idps.iter().any(|idp| url.contains(&format!("//{idp}/authorize?"))) {
            format!("{url}&login_hint={user}")
        } else {
            url.to_string()
        }
    })
    .unwrap_or_else(|e| panic!("the authorization link: {e}"))
}

/// `config` with every redirect URI naming the gateway's port `port`.
pub fn redirecting_to(mut config: MockIdpConfig, port: u16) -> MockIdpConfig {
    for client in &mut config.clients {
        for uri in &mut client.redirect_uris {
            *uri = uri.replace("127.0.0.1:10003", &format!("127.0.0.1:{port}"));
        }
    }
    config
}

/// `envoy-configs/claim-enforcement.yaml` with the FinPort IdP and one
/// backend.
pub struct Ingress {
    pub idp: MockIdp,
    pub backend: EchoBackend,
    pub envoy: Envoy,
}

impl Ingress {
    pub fn start() -> Self {
        let idp = finport_idp();
        let backend = EchoBackend::start().unwrap();
        let envoy = ShippedConfig::new("claim-enforcement.yaml")
            .port(9000, idp.port())
            .port(9001, backend.port())
            .start()
            .unwrap_or_else(|e| panic!("claim-enforcement.yaml did not start: {e}"));
        Ingress { idp, backend, envoy }
    }

    /// A token of `user` with the viewer role, for the portfolio route.
    pub fn viewer(&self, user: &str) -> String {
        let mut claims = self.idp.standard_claims(user, FINPORT_AUDIENCE, 300);
        claims["scope"] = json!("openid portfolio:read");
        claims["roles"] = json!(["viewer"]);
        self.idp.mint(claims)
    }
}

/// `envoy-configs/delegation-broker.yaml` with the FinPort IdP (configured
/// by `config`) and one backend behind every upstream.
pub struct Broker {
    pub idp: MockIdp,
    pub backend: EchoBackend,
    pub envoy: Envoy,
}

impl Broker {
    /// With the demo IdP and the broker's real secret.
    pub fn start() -> Self {
        Self::start_with(MockIdpConfig::default(), mock_idp::DEMO_BROKER_SECRET)
    }

    /// With the IdP configured by `config` and the broker's secret `secret`.
    pub fn start_with(config: MockIdpConfig, secret: &str) -> Self {
        let idp = MockIdp::start(config).unwrap();
        let backend = EchoBackend::start().unwrap();
        let envoy = ShippedConfig::new("delegation-broker.yaml")
            .port(9000, idp.port())
            .port(9001, backend.port())
            .env("BATON_BROKER_SECRET", secret)
            .start()
            .unwrap_or_else(|e| panic!("delegation-broker.yaml did not start: {e}"));
        assert!(
            envoy.wait_for(Duration::from_secs(30), |e| e.counter("baton_obo.jwks.fetch_success") >= 1),
            "the broker did not fetch the IdP's keys"
        );
        Broker { idp, backend, envoy }
    }

    /// A verified user token of alice whose client (the caller) is `client`.
    pub fn token_of(&self, client: &str) -> String {
        let mut claims = self.idp.standard_claims("alice", FINPORT_AUDIENCE, 300);
        claims["scope"] = json!("openid portfolio:read");
        claims["client_id"] = json!(client);
        claims["azp"] = json!(client);
        self.idp.mint(claims)
    }

    /// `method` to `host` through the broker, with `authorization` if any.
    pub fn call(&self, method: &str, host: &str, authorization: Option<&str>) -> ClientResponse {
        let mut request = ClientRequest::new(method, "/api/data").header("host", host);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        self.envoy.send(&request)
    }
}
