//! A sibling of finding 4: a method that passes one rule and means another
//! at the backend. Servers let a request name a second method
//! (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, a
//! `_method` parameter) and answer `HEAD` with their `GET` handler. Every
//! filter whose rules match methods refuses a request naming a second
//! method (400) rather than deciding on the first, and a `GET` rule holds
//! for `HEAD`.

use baton_harness::body_json;
use http_kit::ClientRequest;

use crate::world::{Broker, Ingress, TransferGateway, transfer};

/// The ways a request can name a second method: a header, or the query.
const SECOND_METHODS: [(&str, Option<(&str, &str)>); 6] = [
    ("", Some(("x-http-method-override", "DELETE"))),
    ("", Some(("x-http-method", "DELETE"))),
    ("", Some(("x-method-override", "PUT"))),
    ("", Some(("X-HTTP-Method-Override", "post"))),
    ("?_method=DELETE", None),
    ("?view=all&%5Fmethod=delete", None),
];

fn with_second_method(
    mut request: ClientRequest,
    query: &str,
    header: Option<(&str, &str)>,
) -> ClientRequest {
    request.target.push_str(query);
    match header {
        Some((name, value)) => request.header(name, value),
        None => request,
    }
}

#[test]
fn the_ingress_decides_on_one_method_only() {
    let world = Ingress::start();
    let (ingress, backend) = (&world.envoy, &world.backend);
    let viewer = format!("Bearer {}", world.viewer("alice"));
    for (query, header) in SECOND_METHODS {
        let request = ClientRequest::get("/portfolio/summary").header("authorization", &viewer);
        let refused = ingress.send(&with_second_method(request, query, header));
        assert_eq!(refused.status, 400, "{query} {header:?}: {}", refused.body_str());
        assert_eq!(body_json(&refused)["error"], "invalid_request");
    }
    assert!(backend.requests().is_empty(), "a request naming a second method was forwarded");
    assert_eq!(ingress.counter("baton_ce.denied.ambiguous_method"), SECOND_METHODS.len() as u64);
    // HEAD is held to the GET rule: no token, no answer.
    let head = ingress.send(&ClientRequest::new("HEAD", "/portfolio/summary"));
    assert_eq!(head.status, 401);
    let head =
        ingress.send(&ClientRequest::new("HEAD", "/portfolio/summary").header("authorization", &viewer));
    assert_eq!(head.status, 200);
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn the_broker_decides_on_one_method_only() {
    let broker = Broker::start();
    let bearer = format!("Bearer {}", broker.token_of("finport-app"));
    for (query, header) in SECOND_METHODS {
        let request = ClientRequest::get("/api/data")
            .header("host", "ledger.internal")
            .header("authorization", &bearer);
        let refused = broker.envoy.send(&with_second_method(request, query, header));
        assert_eq!(refused.status, 400, "{query} {header:?}: {}", refused.body_str());
    }
    assert!(broker.backend.requests().is_empty());
    assert!(
        broker.idp.token_requests().iter().all(|r| r.grant_type.as_deref() == Some("client_credentials")),
        "a request naming a second method was exchanged"
    );
    assert_eq!(broker.call("GET", "ledger.internal", Some(&bearer)).status, 200);
}

#[test]
fn the_a2a_gateway_decides_on_one_method_only() {
    let gateway = TransferGateway::start();
    for (query, header) in SECOND_METHODS {
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        let refused = gateway.post_to(
            &format!("/{query}"),
            Some(&format!("Bearer {}", gateway.token("alice"))),
            &transfer(None),
            &headers,
        );
        assert_eq!(refused.status, 400, "{query} {header:?}: {}", refused.body_str());
    }
    assert!(gateway.agent.requests().is_empty());
    assert_eq!(gateway.envoy.counter("baton_itac.ambiguous_method"), SECOND_METHODS.len() as u64);
}
