//! Finding 11 and its siblings: a token minted for another audience never
//! reaches an upstream. A real IdP that ignores `audience` on the client
//! credentials grant issues its default audience; the broker checks every
//! issued JWT's `aud` and `iss` against what it asked for, in every mode,
//! and refuses (502) rather than inject or cache it.

use std::time::Duration;

use baton_harness::body_json;
use http_kit::ClientRequest;
use mock_idp::{MockIdpConfig, Quirks};

use crate::world::{Broker, bearer_claims};

#[test]
fn a_token_for_the_idps_default_audience_is_never_injected() {
    let mut config = MockIdpConfig {
        quirks: Quirks { client_credentials_ignores_audience: true, ..Quirks::default() },
        ..MockIdpConfig::default()
    };
    for client in &mut config.clients {
        if client.client_id == "agent-broker" {
            client.default_audience = Some("finport-internal-apis".into());
        }
    }
    let broker = Broker::start_with(config, mock_idp::DEMO_BROKER_SECRET);
    let (backend, envoy) = (&broker.backend, &broker.envoy);
    // The grant is asked for again at each tick while its token is missing:
    // how many refusals there are by now depends on timing.
    assert!(envoy.wait_for(Duration::from_secs(10), |e| e.counter("baton_obo.idp.wrong_audience") >= 1));
    let alice = format!("Bearer {}", broker.token_of("finport-app"));

    let refused = envoy.send(
        &ClientRequest::get("/quotes").header("host", "market.internal").header("authorization", &alice),
    );
    assert_eq!(refused.status, 502, "{}", refused.body_str());
    assert_eq!(body_json(&refused)["error"], "server_error");
    assert!(backend.requests().is_empty(), "a token for another audience reached the upstream");
    let log =
        envoy.filter_logs().into_iter().find(|l| l.contains("issued a token not used")).expect("a log line");
    assert!(
        log.contains("target market-data")
            && log.contains("finport-internal-apis")
            && log.contains("market-data"),
        "{log}"
    );

    // The exchanges, whose audience the IdP honours, go through.
    let portfolio = envoy.send(
        &ClientRequest::get("/holdings").header("host", "portfolio.internal").header("authorization", &alice),
    );
    assert_eq!(portfolio.status, 200, "{}", portfolio.body_str());
    assert_eq!(bearer_claims(&backend.requests()[0]).unwrap()["aud"], "portfolio-agent");
}
