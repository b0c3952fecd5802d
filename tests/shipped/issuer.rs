//! Finding 10 and its siblings: a redirect names the server it comes from
//! (RFC 9207 `iss`), on the bank's redirect and on the sign-in's. The
//! shipped gateway knows both servers send it: one naming another server,
//! or none, is a mix-up attempt and ends that authorization.

use baton_harness::RedirectWalk;

use crate::world::{TransferGateway, auth_challenge, transfer};

/// `url` with its `iss` parameter replaced by `iss` (or removed).
fn with_iss(url: &str, iss: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let mut pairs: Vec<String> =
        query.split('&').filter(|p| !p.starts_with("iss=")).map(String::from).collect();
    if let Some(iss) = iss {
        pairs.push(format!("iss={}", http_kit::form_urlencode(&[("x", iss)]).trim_start_matches("x=")));
    }
    format!("{base}?{}", pairs.join("&"))
}

/// alice opens a new link, and the redirect back to `path` is changed by
/// `tamper` on its way: the gateway's answer to it, then to the untouched
/// redirect.
fn tampered(gateway: &TransferGateway, path: &str, tamper: impl Fn(&str) -> String) -> (u16, String, u16) {
    let challenge = gateway.send_as("alice", &transfer(None));
    let link = auth_challenge(&challenge)["authorizationUrl"].as_str().unwrap().to_string();
    let target = format!("127.0.0.1:{}{path}?", gateway.port);
    let mut original = None;
    let mut walk = RedirectWalk::new();
    let idps = [format!("127.0.0.1:{}", gateway.idp.port()), format!("127.0.0.1:{}", gateway.bank.port())];
    let hops = walk
        .follow(&link, 10, |url| {
            if url.contains(&target) {
                original = Some(url.to_string());
                tamper(url)
            } else if idps.iter().any(|idp| url.contains(&format!("//{idp}/authorize?"))) {
                format!("{url}&login_hint=alice")
            } else {
                url.to_string()
            }
        })
        .unwrap();
    let refused = &hops.last().unwrap().response;
    let again = walk.follow(&original.expect("the redirect came"), 1, |url| url.to_string()).unwrap();
    (refused.status, refused.body_str(), again.last().unwrap().response.status)
}

#[test]
fn a_redirect_naming_another_server_or_none_ends_the_authorization() {
    let gateway = TransferGateway::start();
    for path in ["/a2a/oauth/callback", "/a2a/oauth/signed-in"] {
        for (name, iss) in [("another server", Some("https://evil.example")), ("no iss", None)] {
            let (status, page, again) = tampered(&gateway, path, |url| with_iss(url, iss));
            assert_eq!(status, 400, "{path}, {name}: {page}");
            assert!(page.contains("did not come from the expected"), "{path}, {name}: {page}");
            assert_eq!(again, 400, "{path}, {name}: the true redirect still worked after a mix-up attempt");
        }
    }
    assert_eq!(gateway.envoy.counter("baton_itac.issuer_mismatch"), 4);
    assert!(gateway.agent.requests().is_empty());
    // The untouched flow works.
    gateway.authorized_task("alice");
}
