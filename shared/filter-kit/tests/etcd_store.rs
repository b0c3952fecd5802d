//! The store's etcd protocol against a real etcd (Debian's `etcd-server`,
//! 3.4; `make test-tools` installs it): each operation goes through the
//! Host adapter (the `Callout` a filter would dispatch), over HTTP/1.1 to
//! etcd's JSON gateway, and its answer back through `read_answer`.
//!
//! Each test starts its own single-member etcd on free 127.0.0.1 ports with
//! a temporary data folder, and stops it by PID when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use baton_filter_kit::config::from_json;
use baton_filter_kit::host::CalloutResponse;
use baton_filter_kit::store::{
    EtcdAnswer, EtcdEndpoint, EtcdError, EtcdOperation, Lease, StoreConfig, StoreSpec, compile_store,
    read_answer,
};
use baton_filter_kit::test_host::TestHost;
use http_kit::{ClientRequest, send};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A real etcd, with the store's operations run against it.
struct Etcd(baton_harness::Etcd);

impl Etcd {
    fn start() -> Etcd {
        Etcd(baton_harness::Etcd::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs `operation` as a filter would: the `Callout` the adapter
    /// dispatches, sent to etcd, the answer read back through the Host.
    fn run(&self, operation: &EtcdOperation) -> Result<EtcdAnswer, EtcdError> {
        let host = TestHost::new(1_700_000_000);
        let endpoint =
            EtcdEndpoint { cluster: "etcd".into(), authority: self.0.addr().to_string(), timeout_ms: 500 };
        endpoint.dispatch(&host, operation).unwrap();
        let call = host.calls().pop().unwrap();
        let header =
            |name: &str| call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
        let mut request = ClientRequest::new(&header(":method"), &call.path).body(call.body.clone());
        for (name, value) in call.headers.iter().filter(|(name, _)| !name.starts_with(':')) {
            request = request.header(name, value);
        }
        let request = request.header("host", &header(":authority"));
        let answer = send(self.0.addr(), &request, CALL_TIMEOUT).unwrap();
        let body_size = answer.body.len();
        host.set_callout_response(CalloutResponse {
            status: Some(answer.status),
            body: answer.body,
            body_too_large: false,
        });
        read_answer(&host, operation, answer.headers.len(), body_size)
    }

    fn grant(&self, ttl_secs: u32) -> Lease {
        match self.run(&EtcdOperation::GrantLease { ttl_secs }) {
            Ok(EtcdAnswer::Lease(lease)) => lease,
            other => panic!("lease grant: {other:?}"),
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.run(&EtcdOperation::Get { key: key.to_vec() }) {
            Ok(EtcdAnswer::Value(value)) => value.map(|value| value.value),
            other => panic!("get: {other:?}"),
        }
    }
}

#[test]
fn create_if_absent_wins_once_and_the_second_caller_sees_the_first_value() {
    let etcd = Etcd::start();
    let lease = etcd.grant(60);
    assert!(lease.ttl_secs >= 60, "{lease:?}");
    let create = |value: &[u8]| {
        etcd.run(&EtcdOperation::CreateIfAbsent {
            key: b"baton/mark".to_vec(),
            value: value.to_vec(),
            lease: lease.id,
        })
    };
    assert_eq!(create(b"first"), Ok(EtcdAnswer::Created));
    match create(b"second") {
        Ok(EtcdAnswer::AlreadyExists(existing)) => {
            assert_eq!(existing.value, b"first");
            assert_eq!(existing.lease, Some(lease.id));
            assert!(existing.create_revision > 0 && existing.mod_revision >= existing.create_revision);
        }
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(etcd.get(b"baton/mark").as_deref(), Some(&b"first"[..]));

    // Callers racing (as replicas would): one wins, every other one reads
    // the winner's value.
    let answers: Vec<(u8, Result<EtcdAnswer, EtcdError>)> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8u8)
            .map(|racer| {
                let etcd = &etcd;
                scope.spawn(move || {
                    let race = EtcdOperation::CreateIfAbsent {
                        key: b"baton/race".to_vec(),
                        value: vec![racer],
                        lease: lease.id,
                    };
                    (racer, etcd.run(&race))
                })
            })
            .collect();
        racers.into_iter().map(|racer| racer.join().unwrap()).collect()
    });
    let winners: Vec<u8> = answers
        .iter()
        .filter(|(_, answer)| *answer == Ok(EtcdAnswer::Created))
        .map(|(racer, _)| *racer)
        .collect();
    let [winner] = winners[..] else { panic!("{answers:?}") };
    for (racer, answer) in &answers {
        match answer {
            Ok(EtcdAnswer::Created) => assert_eq!(*racer, winner),
            Ok(EtcdAnswer::AlreadyExists(existing)) => assert_eq!(existing.value, [winner]),
            other => panic!("racer {racer}: {other:?}"),
        }
    }
}

#[test]
fn a_leased_key_disappears_after_its_ttl() {
    let etcd = Etcd::start();
    // etcd grants at least its minimum TTL (2 s by default) whatever is asked.
    let lease = etcd.grant(1);
    assert!(lease.ttl_secs >= 1, "{lease:?}");
    let put = EtcdOperation::Put { key: b"baton/leased".to_vec(), value: b"v".to_vec(), lease: lease.id };
    assert_eq!(etcd.run(&put), Ok(EtcdAnswer::Written));
    assert_eq!(etcd.get(b"baton/leased").as_deref(), Some(&b"v"[..]));
    let granted = Instant::now();
    let deadline = granted + Duration::from_secs(lease.ttl_secs + 5);
    while etcd.get(b"baton/leased").is_some() {
        assert!(Instant::now() < deadline, "the key outlived its {} s lease by 5 s", lease.ttl_secs);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Not before its time (with a second of slack for the grant's round trip).
    assert!(
        granted.elapsed() + Duration::from_secs(1) >= Duration::from_secs(lease.ttl_secs),
        "{:?}",
        granted.elapsed()
    );
    // The lease is gone with it: a write naming it is refused, recognisably.
    let error = etcd.run(&put).unwrap_err();
    assert!(error.is_lease_not_found(), "{error:?}");
}

#[test]
fn a_missing_key_is_absent_and_delete_deletes() {
    let etcd = Etcd::start();
    assert_eq!(etcd.get(b"baton/never-written"), None);
    let lease = etcd.grant(60);
    let put = |value: &[u8]| {
        etcd.run(&EtcdOperation::Put { key: b"baton/k".to_vec(), value: value.to_vec(), lease: lease.id })
    };
    assert_eq!(put(b"one"), Ok(EtcdAnswer::Written));
    assert_eq!(put(b"two"), Ok(EtcdAnswer::Written));
    assert_eq!(etcd.get(b"baton/k").as_deref(), Some(&b"two"[..]));
    let delete = EtcdOperation::Delete { key: b"baton/k".to_vec() };
    assert_eq!(etcd.run(&delete), Ok(EtcdAnswer::Deleted(1)));
    assert_eq!(etcd.get(b"baton/k"), None);
    assert_eq!(etcd.run(&delete), Ok(EtcdAnswer::Deleted(0)));
    // A create-if-absent after the delete creates again.
    let create =
        EtcdOperation::CreateIfAbsent { key: b"baton/k".to_vec(), value: b"three".to_vec(), lease: lease.id };
    assert_eq!(etcd.run(&create), Ok(EtcdAnswer::Created));
}

fn store() -> StoreConfig {
    let spec: StoreSpec = from_json(
        br#"{"etcd":{"cluster":"etcd","prefix":"baton/"},
             "sealingKeys":[{"id":"k1","secret":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}],
             "currentKey":"k1"}"#,
    )
    .unwrap();
    compile_store(spec, "store").unwrap()
}

#[test]
fn sealed_values_round_trip_through_etcd_and_do_not_open_elsewhere() {
    let etcd = Etcd::start();
    let store = store();
    let host = TestHost::new(1_700_000_000);
    let key = store.key("token", &[b"alice", b"task-1"]);
    let sealed = store.keys.seal(&host, &key, b"the bank's token").unwrap();
    let lease = etcd.grant(60);
    let create = EtcdOperation::CreateIfAbsent { key: key.clone(), value: sealed, lease: lease.id };
    assert_eq!(etcd.run(&create), Ok(EtcdAnswer::Created));
    let stored = etcd.get(&key).unwrap();
    assert_eq!(store.keys.open(&key, &stored).unwrap(), b"the bank's token");
    // What etcd holds names no user or task and shows no token.
    let key_text = String::from_utf8(key.clone()).unwrap();
    assert!(!key_text.contains("alice") && !key_text.contains("task-1"), "{key_text}");
    assert!(!stored.windows(10).any(|window| window == b"bank's tok"));
    // The same bytes copied under another user's key do not open there.
    let other = store.key("token", &[b"mallory", b"task-1"]);
    let copy = EtcdOperation::Put { key: other.clone(), value: stored, lease: lease.id };
    assert_eq!(etcd.run(&copy), Ok(EtcdAnswer::Written));
    assert!(store.keys.open(&other, &etcd.get(&other).unwrap()).is_err());
}
