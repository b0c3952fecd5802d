//! The browser's sign-in across a fleet of replicas (a shared store): the
//! link opened on one replica, the sign-in's redirect on another, the
//! bank's on a third, each replica its own engine and host, one in-memory
//! etcd answering their store steps as etcd would.

use std::collections::HashMap;

use baton_filter_kit::store::{EtcdOperation, LeaseId};
use baton_filter_kit::token_calls::TokenCall;

use super::*;
use crate::sealed_state::StoreOutcome;

const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// One etcd for the fleet.
#[derive(Default)]
struct Etcd(HashMap<Vec<u8>, Vec<u8>>);

impl Etcd {
    fn answer(&mut self, operation: &EtcdOperation) -> StoreOutcome {
        match operation {
            EtcdOperation::Get { key } => match self.0.get(key) {
                Some(value) => StoreOutcome::Found(value.clone()),
                None => StoreOutcome::Unused,
            },
            EtcdOperation::GrantLease { .. } => StoreOutcome::Lease(LeaseId::new(7).unwrap()),
            EtcdOperation::CreateIfAbsent { key, value, .. } => {
                if self.0.contains_key(key) {
                    return StoreOutcome::AlreadyUsed;
                }
                self.0.insert(key.clone(), value.clone());
                StoreOutcome::Marked
            }
            EtcdOperation::Put { key, value, .. } => {
                self.0.insert(key.clone(), value.clone());
                StoreOutcome::Written
            }
            EtcdOperation::Delete { key } => {
                self.0.remove(key);
                StoreOutcome::Written
            }
        }
    }
}

/// One replica: its own engine and host, the fleet's configuration.
struct Replica {
    engine: Engine,
    host: TestHost,
}

impl Replica {
    fn of(world: &World) -> Self {
        let (engine, host) = (Engine::new(world.engine.shared_config()), TestHost::new(NOW));
        engine.init_shared_data(&host);
        Self { engine, host }
    }

    /// Decides `request` to its end: store steps answered by `etcd`, token
    /// calls by `exchange`.
    fn drive(
        &mut self,
        request: &Request,
        etcd: &mut Etcd,
        exchange: &dyn Fn(&TokenCall) -> ExchangeOutcome,
    ) -> Verdict {
        let mut verdict = self.engine.decide(&self.host, request, Round::FIRST);
        for number in 1..12 {
            let (key, outcome) = match &verdict {
                Verdict::AwaitStore(call) => (call.key, ExchangeOutcome::Store(etcd.answer(&call.operation))),
                Verdict::AwaitCall(call) => (call.key, exchange(call)),
                _ => return verdict,
            };
            let round = Round { number, keys: KeyWait::Allowed, exchange: Some((&key, &outcome)) };
            verdict = self.engine.decide(&self.host, request, round);
        }
        panic!("never decided: {verdict:?}")
    }

    /// The background store calls, answered by `etcd` until none is left.
    fn settle_background(&mut self, etcd: &mut Etcd) {
        for _ in 0..4 {
            for call in self.engine.take_background() {
                let outcome = etcd.answer(&call.operation);
                self.engine.finish_background(&self.host, &call, &outcome);
            }
        }
    }
}

fn fleet_world() -> World {
    world(json!({"primaryLogin": primary_login()}), |config| {
        config["store"] = json!({"etcd": {"cluster": "etcd", "timeoutMs": 500},
                                 "sealingKeys": [{"id": "k1", "secret": K1}], "currentKey": "k1"});
    })
}

fn no_call(call: &TokenCall) -> ExchangeOutcome {
    panic!("no token call expected: {call:?}")
}

/// The sign-in's code exchange: an ID token for `sub` with the nonce of
/// the sign-in that `sign_in_url` started.
fn signed_in_as(world: &World, sub: &str, sign_in_url: &str) -> impl Fn(&TokenCall) -> ExchangeOutcome {
    let id_token = world.id_token(sub, &param(sign_in_url, "nonce"));
    move |call| {
        assert_eq!(call.endpoint, crate::login::LOGIN_ENDPOINT);
        ExchangeOutcome::Token {
            access: Secret::new("corp-access"),
            id_token: Some(Secret::new(id_token.clone())),
        }
    }
}

/// `user` is challenged on `replica`: the link's `state`.
fn challenge(world: &World, replica: &mut Replica, etcd: &mut Etcd, user: &str, task: &str) -> String {
    let answer = reply(replica.drive(&world.message(user, task, None), etcd, &no_call));
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let challenge = &body["result"]["status"]["message"]["parts"][1]["data"]["authChallenge"];
    challenge["state"].as_str().unwrap().to_string()
}

/// Opens the link on `replica`: the browser's cookie and the sign-in URL.
fn open_link(replica: &mut Replica, etcd: &mut Etcd, state: &str) -> (String, String) {
    let start = reply(replica.drive(&get(&format!("/a2a/oauth/start?state={state}"), None), etcd, &no_call));
    assert_eq!(start.status, 302, "{}", start.body);
    (cookie_of(&start), header(&start, "location").unwrap().to_string())
}

fn signed_in_path(sign_in_url: &str) -> String {
    format!("/a2a/oauth/signed-in?code=c1&state={}&iss={}", param(sign_in_url, "state"), urlencoding(CORP))
}

#[test]
fn the_link_the_sign_in_and_the_bank_redirect_each_land_on_another_replica() {
    let w = fleet_world();
    let (mut a, mut b, mut c) = (Replica::of(&w), Replica::of(&w), Replica::of(&w));
    let mut etcd = Etcd::default();
    let state = challenge(&w, &mut a, &mut etcd, "alice", "t-1");

    // The link opens on B: a cookie, and the sign-in at the users' IdP
    // with a sealed sign-in `state` (nothing kept on B).
    let (cookie, sign_in) = open_link(&mut b, &mut etcd, &state);
    assert!(sign_in.starts_with("https://corp.example/authorize?"), "{sign_in}");
    let login_state = param(&sign_in, "state");
    assert!(!login_state.contains(&state) && login_state.len() > state.len());
    assert_eq!(b.host.counter(metrics::SIGN_INS_STARTED), 1);

    // The sign-in's redirect lands on C: used once (in etcd), its code
    // exchanged, the ID token names alice: on to the bank with a `state`
    // bound to this browser.
    let back = get(&signed_in_path(&sign_in), Some(&cookie));
    let to_bank = reply(c.drive(&back, &mut etcd, &signed_in_as(&w, "alice", &sign_in)));
    assert_eq!(to_bank.status, 302, "{}", to_bank.body);
    let bank_url = header(&to_bank, "location").unwrap().to_string();
    assert!(bank_url.starts_with("https://bank.example/authorize?"), "{bank_url}");
    let bound = param(&bank_url, "state");
    assert_ne!(bound, state, "a state bound to the browser");
    assert_eq!(c.host.counter(metrics::SIGN_INS_COMPLETED), 1);
    // Replayed (on any replica): refused, no second code exchange.
    let replay = reply(a.drive(&back, &mut etcd, &no_call));
    assert_eq!(replay.status, 400, "{}", replay.body);

    // The bank's redirect on A, with the bound `state`: another browser is
    // refused and does not use it up; the link's own `state` binds no
    // browser and is refused; alice's browser completes it.
    let callback = |state: &str| format!("/a2a/oauth/callback?code=b1&state={state}");
    let elsewhere = "__Host-baton-itac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let refused = reply(a.drive(&get(&callback(&bound), Some(elsewhere)), &mut etcd, &no_call));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let unbound = reply(a.drive(&get(&callback(&state), Some(&cookie)), &mut etcd, &no_call));
    assert_eq!(unbound.status, 403, "{}", unbound.body);
    let bank_token = w.bank_token("alice@bank");
    let bank = |call: &TokenCall| {
        assert_eq!(call.endpoint, 0);
        ExchangeOutcome::Token { access: Secret::new(bank_token.clone()), id_token: None }
    };
    let done = reply(a.drive(&get(&callback(&bound), Some(&cookie)), &mut etcd, &bank));
    assert_eq!(done.status, 200, "{}", done.body);
    // Used once across the fleet: the same redirect again, on B.
    let again = reply(b.drive(&get(&callback(&bound), Some(&cookie)), &mut etcd, &no_call));
    assert_eq!(again.status, 400, "{}", again.body);

    // etcd shows no user, task, state or token.
    for (key, value) in &etcd.0 {
        for secret in ["alice", "t-1", state.as_str(), bound.as_str(), bank_token.as_str()] {
            let shows = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!shows(key) && !shows(value), "etcd shows {secret}");
        }
    }
}

#[test]
fn someone_elses_sign_in_ends_the_authorization_across_the_fleet() {
    let w = fleet_world();
    let (mut a, mut b) = (Replica::of(&w), Replica::of(&w));
    let mut etcd = Etcd::default();
    // bob asks and his link reaches alice, who signs in on A.
    let state = challenge(&w, &mut a, &mut etcd, "bob", "t-bob");
    let (cookie, sign_in) = open_link(&mut a, &mut etcd, &state);
    let back = get(&signed_in_path(&sign_in), Some(&cookie));
    let refused = reply(a.drive(&back, &mut etcd, &signed_in_as(&w, "alice", &sign_in)));
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("another user"), "{}", refused.body);
    assert!(header(&refused, "location").is_none(), "the bank is never named to her browser");
    a.settle_background(&mut etcd);
    assert_eq!(a.host.counter(metrics::AUTHORIZATIONS_ENDED), 1);

    // bob's own sign-in, afterwards, on B: signed in, but the bank's
    // redirect finds the authorization used up.
    let (cookie, sign_in) = open_link(&mut b, &mut etcd, &state);
    let back = get(&signed_in_path(&sign_in), Some(&cookie));
    let to_bank = reply(b.drive(&back, &mut etcd, &signed_in_as(&w, "bob", &sign_in)));
    assert_eq!(to_bank.status, 302);
    let bound = param(header(&to_bank, "location").unwrap(), "state");
    let callback = get(&format!("/a2a/oauth/callback?code=b1&state={bound}"), Some(&cookie));
    let used = reply(b.drive(&callback, &mut etcd, &no_call));
    assert_eq!(used.status, 400, "{}", used.body);
}

#[test]
fn a_sign_in_in_another_browser_or_with_a_forged_state_is_refused() {
    let w = fleet_world();
    let (mut a, mut b) = (Replica::of(&w), Replica::of(&w));
    let mut etcd = Etcd::default();
    let state = challenge(&w, &mut a, &mut etcd, "alice", "t-1");
    let (cookie, sign_in) = open_link(&mut a, &mut etcd, &state);
    // Another browser brings the sign-in back (login CSRF): refused before
    // anything is used or exchanged.
    let elsewhere = "__Host-baton-itac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let csrf = reply(b.drive(&get(&signed_in_path(&sign_in), Some(elsewhere)), &mut etcd, &no_call));
    assert_eq!(csrf.status, 403, "{}", csrf.body);
    // The link's own `state` (or anything not sealed for the sign-in) as
    // the sign-in's: unknown.
    let forged = format!("/a2a/oauth/signed-in?code=c1&state={state}&iss={}", urlencoding(CORP));
    assert_eq!(reply(b.drive(&get(&forged, Some(&cookie)), &mut etcd, &no_call)).status, 400);
    // The right browser still completes it.
    let to_bank = reply(b.drive(
        &get(&signed_in_path(&sign_in), Some(&cookie)),
        &mut etcd,
        &signed_in_as(&w, "alice", &sign_in),
    ));
    assert_eq!(to_bank.status, 302, "{}", to_bank.body);
    // A replica with other sealing keys opens none of it.
    let other = world(json!({"primaryLogin": primary_login()}), |config| {
        config["store"] = json!({"etcd": {"cluster": "etcd"}, "currentKey": "k1",
            "sealingKeys": [{"id": "k1", "secret": "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="}]});
    });
    let mut stranger = Replica::of(&other);
    let start =
        reply(stranger.drive(&get(&format!("/a2a/oauth/start?state={state}"), None), &mut etcd, &no_call));
    assert_eq!(start.status, 400, "{}", start.body);
}
