//! A user's task record shared by a fleet of Envoys (issue 16; with a
//! `store` section): the bank token kept for (user, task) after the
//! redirect or a code exchange, so the next message of the task is served
//! on whichever replica it lands; and, before that, a task the gateway
//! named in a challenge (its context and the challenge, no token), so any
//! replica answers the task's calls as the one that named it.
//!
//! In etcd the record is sealed (ChaCha20-Poly1305, see
//! [`baton_filter_kit::store::seal`]), bound to [`PURPOSE`] and to its own
//! store key, under a key that is a keyed hash of (user, task id): a dump
//! of etcd shows no user, task id or token, and a record copied under
//! another key does not open. The plaintext names its user and task, and
//! is checked against the verified user and the message's task on every
//! read ([`open`]), so a record is never found for anyone else. It is
//! written with a lease of the record's remaining lifetime (the token's
//! expiry; at least etcd's 2 s), so nothing outlives its token.
//!
//! A task's gate (every message of the task needs the credential, until
//! a time) is shared too, under a keyed hash of the task alone: a replica
//! that never saw the task reads it before it lets a message whose rule
//! does not hold go without the token (see [`gate_key`]).
//!
//! Writes take two steps a request waits for (a lease, then the put); a
//! read one. What a step brought arrives as a [`StoreOutcome`] under the
//! step's own key ([`read_step_key`], [`write_step_key`]).

use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::store::{EtcdOperation, StoreCall, StoreConfig};
use baton_token::TokenHash;
use baton_token::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics;
use crate::sealed_state::StoreOutcome;
use crate::store::TaskRecord;

/// What a sealed task record is bound to (with its store key): a value
/// sealed for any other use of the same keys does not open as one.
pub const PURPOSE: &[u8] = b"baton in-task-auth-code task v1";
/// Kind of the store entry (the keyed hash's domain).
const KIND: &str = "in-task task";
/// etcd's shortest lease.
const MIN_LEASE_SECS: u64 = 2;

/// The sealed form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    /// The user.
    u: String,
    /// The task.
    t: String,
    /// The bank token (none yet in a gateway's task waiting for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<Secret>,
    /// Last second it may be used.
    e: u64,
    /// The task's context.
    c: String,
    /// The gateway named the task (as the writer knew it).
    g: bool,
    /// The gateway's challenge, while its task waits for authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ch: Option<Value>,
}

/// Whether `record` is worth sharing at `now`: a usable token, or a task
/// the gateway named still waiting for authorization.
pub fn shareable(record: &TaskRecord, now: u64) -> bool {
    now < record.expires_at && (record.token.is_some() || (record.gateway_task && record.challenge.is_some()))
}

/// What a sealed gate is bound to (with its store key).
const GATE_PURPOSE: &[u8] = b"baton in-task-auth-code gate v1";
/// Kind of a gate's store entry.
const GATE_KIND: &str = "in-task gate";

/// The sealed form of a gate.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedGate {
    /// The task.
    t: String,
    /// Until when its messages need the credential.
    u: u64,
}

/// The store key of `task_id`'s gate.
pub fn gate_key(store: &StoreConfig, task_id: &str) -> Vec<u8> {
    store.key(GATE_KIND, &[task_id.as_bytes()])
}

/// What the steps of writing `task_id`'s gate are named by.
pub fn gate_step_key(task_id: &str) -> TokenHash {
    TokenHash::of_parts(&[b"gate-write", task_id.as_bytes()])
}

/// The read of `task_id`'s gate.
pub fn read_gate(store: &StoreConfig, task_id: &str) -> StoreCall {
    StoreCall {
        key: TokenHash::of_parts(&[b"gate-read", task_id.as_bytes()]),
        operation: EtcdOperation::Get { key: gate_key(store, task_id) },
    }
}

/// Opens the gate `value` found under `key` for `task_id`: until when the
/// task is gated, if it still is at `now`.
pub fn open_gate(store: &StoreConfig, key: &[u8], value: &[u8], task_id: &str, now: u64) -> Option<u64> {
    let plaintext = store.keys.open(&[GATE_PURPOSE, key].concat(), value).ok()?;
    let sealed: SealedGate = serde_json::from_slice(&plaintext).ok()?;
    (sealed.t == task_id && now < sealed.u).then_some(sealed.u)
}

/// The next step of writing `task_id`'s gate (until `until`) after `last`
/// (`None` before the first): a lease, then the put; `None` when done
/// (a failure counted and logged).
pub fn gate_write_step(
    store: &StoreConfig,
    host: &dyn Host,
    task_id: &str,
    until: u64,
    last: Option<&StoreOutcome>,
) -> Option<StoreCall> {
    leased_put(store, host, gate_step_key(task_id), until, last, "gate", || {
        let key = gate_key(store, task_id);
        let plaintext = serde_json::to_vec(&SealedGate { t: task_id.to_string(), u: until }).ok()?;
        let value = store.keys.seal(host, &[GATE_PURPOSE, &key].concat(), &plaintext).ok()?;
        Some((key, value))
    })
}

/// The next step, named `step_key`, of a write after `last` (`None` before
/// the first): a lease lasting until `until` (at least etcd's shortest),
/// then the put of what `sealed` gives (key, value) with it. `None` once
/// written, or when it failed: counted (`baton_itac.store.write_failed`)
/// and logged with the cluster and the fault's kind, never the value.
fn leased_put(
    store: &StoreConfig,
    host: &dyn Host,
    step_key: TokenHash,
    until: u64,
    last: Option<&StoreOutcome>,
    what: &str,
    sealed: impl FnOnce() -> Option<(Vec<u8>, Vec<u8>)>,
) -> Option<StoreCall> {
    let call = |operation| Some(StoreCall { key: step_key, operation });
    match last {
        None => {
            let ttl = until.saturating_sub(host.now_unix_secs()).max(MIN_LEASE_SECS);
            call(EtcdOperation::GrantLease { ttl_secs: u32::try_from(ttl).unwrap_or(u32::MAX) })
        }
        Some(StoreOutcome::Lease(lease)) => match sealed() {
            Some((key, value)) => call(EtcdOperation::Put { key, value, lease: *lease }),
            None => write_failed(store, host, what, "not sealed"),
        },
        Some(StoreOutcome::Written) => None,
        Some(StoreOutcome::Unavailable(why)) => write_failed(store, host, what, why),
        Some(_) => write_failed(store, host, what, "store_malformed"),
    }
}

/// Counts and logs a write of a task's `what` that failed for `why`.
fn write_failed(store: &StoreConfig, host: &dyn Host, what: &str, why: &str) -> Option<StoreCall> {
    host.count(metrics::STORE_WRITE_FAILED);
    host.log(
        LogLevel::Warn,
        &format!(
            "cluster={} a task's {what} was kept in this Envoy only (store write failed: {why}); \
             on another replica its next message does not find it",
            store.endpoint.cluster
        ),
    );
    None
}

/// The store key of `user`'s record of `task_id`.
pub fn key(store: &StoreConfig, user: &str, task_id: &str) -> Vec<u8> {
    store.key(KIND, &[user.as_bytes(), task_id.as_bytes()])
}

/// What a read of `user`'s record of `task_id` is named by.
pub fn read_step_key(user: &str, task_id: &str) -> TokenHash {
    TokenHash::of_parts(&[b"task-read", user.as_bytes(), task_id.as_bytes()])
}

/// What the steps of writing `user`'s record of `task_id` are named by
/// (`detached`: a write no request waits for, whose answers must not be
/// taken for a request's, nor a request's for its).
pub fn write_step_key(user: &str, task_id: &str, detached: bool) -> TokenHash {
    let kind: &[u8] = if detached { b"task-write-detached" } else { b"task-write" };
    TokenHash::of_parts(&[kind, user.as_bytes(), task_id.as_bytes()])
}

fn bound_to(key: &[u8]) -> Vec<u8> {
    [PURPOSE, key].concat()
}

/// Seals `record` for store key `key`; `None` when it is not worth
/// sharing ([`shareable`]) or without randomness.
pub fn seal(store: &StoreConfig, host: &dyn Host, key: &[u8], record: &TaskRecord) -> Option<Vec<u8>> {
    if !shareable(record, host.now_unix_secs()) {
        return None;
    }
    let sealed = Sealed {
        u: record.user.clone(),
        t: record.task_id.clone(),
        k: record.token.clone(),
        e: record.expires_at,
        c: record.context_id.clone(),
        g: record.gateway_task,
        // Only while it waits: a token ends the challenge.
        ch: record.token.is_none().then(|| record.challenge.clone()).flatten(),
    };
    let plaintext = serde_json::to_vec(&sealed).ok()?;
    store.keys.seal(host, &bound_to(key), &plaintext).ok()
}

/// Opens `value` found under `key` as `user`'s record of `task_id`, usable
/// at `now` (a token, or the gateway's challenge): anything else (not
/// authentic, another purpose or key, sealed with a key no longer
/// configured, another user or task inside, expired, neither) is no
/// record.
pub fn open(
    store: &StoreConfig,
    key: &[u8],
    value: &[u8],
    user: &str,
    task_id: &str,
    now: u64,
) -> Option<TaskRecord> {
    let plaintext = store.keys.open(&bound_to(key), value).ok()?;
    let sealed: Sealed = serde_json::from_slice(&plaintext).ok()?;
    let record = TaskRecord {
        user: sealed.u,
        task_id: sealed.t,
        gateway_task: sealed.g,
        token: sealed.k,
        expires_at: sealed.e,
        context_id: sealed.c,
        challenge: sealed.ch,
    };
    (record.user == user && record.task_id == task_id && shareable(&record, now)).then_some(record)
}

/// The read of `user`'s record of `task_id`.
pub fn read(store: &StoreConfig, user: &str, task_id: &str) -> StoreCall {
    StoreCall {
        key: read_step_key(user, task_id),
        operation: EtcdOperation::Get { key: key(store, user, task_id) },
    }
}

/// Where writing a record stands.
#[derive(Debug, PartialEq)]
pub enum Write {
    /// Wait for this store step.
    Wait(StoreCall),
    /// Written, or given up (counted and logged): either way the request
    /// goes on, on this replica.
    Done,
}

/// The next step of writing `record` (the one just kept in this Envoy)
/// at `now`, after `last` (`None` before the first): a lease of its
/// remaining lifetime, then the put. A failure is counted
/// (`baton_itac.store.write_failed`) and logged without the user, task,
/// key or token; the request still succeeds here.
pub fn write_step(
    store: &StoreConfig,
    host: &dyn Host,
    record: Option<&TaskRecord>,
    last: Option<&StoreOutcome>,
    detached: bool,
) -> Write {
    let Some(record) = record.filter(|record| shareable(record, host.now_unix_secs())) else {
        if last.is_some() {
            write_failed(store, host, "record", "the record was no longer held here");
        }
        return Write::Done; // nothing (more) to share
    };
    let step_key = write_step_key(&record.user, &record.task_id, detached);
    let next = leased_put(store, host, step_key, record.expires_at, last, "record", || {
        let key = key(store, &record.user, &record.task_id);
        let value = seal(store, host, &key, record)?;
        Some((key, value))
    });
    match next {
        Some(call) => Write::Wait(call),
        None => Write::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_filter_kit::test_host::TestHost;
    use serde_json::json;

    use crate::model::FilterConfig;

    const NOW: u64 = 1_800_000_000;
    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn config() -> FilterConfig {
        let mut config = crate::config::tests::base();
        config["store"] = json!({"etcd": {"cluster": "etcd"}, "sealingKeys": [{"id": "k1", "secret": K1}], "currentKey": "k1"});
        crate::config::parse(config.to_string().as_bytes()).unwrap()
    }

    fn record(user: &str, task: &str) -> TaskRecord {
        TaskRecord {
            user: user.into(),
            task_id: task.into(),
            gateway_task: false,
            token: Some(Secret::new(format!("bank-token-{user}-{task}"))),
            expires_at: NOW + 600,
            context_id: "ctx-1".into(),
            challenge: None,
        }
    }

    #[test]
    fn a_record_opens_only_for_its_user_and_task_under_its_key() {
        let (host, config) = (TestHost::new(NOW), config());
        let store = config.shared_store.as_ref().unwrap();
        let alice = key(store, "alice", "t-1");
        let sealed = seal(store, &host, &alice, &record("alice", "t-1")).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("alice") && !text.contains("t-1") && !text.contains("bank-token"));
        assert!(!String::from_utf8_lossy(&alice).contains("alice"));
        let opened = open(store, &alice, &sealed, "alice", "t-1", NOW).unwrap();
        assert_eq!(opened.token.unwrap().expose(), "bank-token-alice-t-1");
        // Asked for by another user or for another task: nothing.
        assert!(open(store, &alice, &sealed, "bob", "t-1", NOW).is_none());
        assert!(open(store, &alice, &sealed, "alice", "t-2", NOW).is_none());
        // Copied under another key: does not open.
        let bob = key(store, "bob", "t-1");
        assert!(open(store, &bob, &sealed, "alice", "t-1", NOW).is_none());
        // bob's record sealed for alice's key (as a writer with the keys
        // could): opens, and is refused by what it names.
        let bobs = seal(store, &host, &alice, &record("bob", "t-1")).unwrap();
        assert!(open(store, &alice, &bobs, "alice", "t-1", NOW).is_none());
        // Expired: no record.
        assert!(open(store, &alice, &sealed, "alice", "t-1", NOW + 600).is_none());
        // Tampered: no record.
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(store, &alice, &tampered, "alice", "t-1", NOW).is_none());
    }

    #[test]
    fn a_write_is_a_lease_of_the_records_lifetime_then_a_put() {
        let (host, config) = (TestHost::new(NOW), config());
        let store = config.shared_store.as_ref().unwrap();
        let kept = record("alice", "t-1");
        let Write::Wait(grant) = write_step(store, &host, Some(&kept), None, false) else {
            panic!("a lease first")
        };
        assert_eq!(grant.operation, EtcdOperation::GrantLease { ttl_secs: 600 });
        let lease = baton_filter_kit::store::LeaseId::new(7).unwrap();
        let Write::Wait(put) =
            write_step(store, &host, Some(&kept), Some(&StoreOutcome::Lease(lease)), false)
        else {
            panic!("then the put")
        };
        assert_eq!(put.key, grant.key);
        let EtcdOperation::Put { key: put_key, value, lease: put_lease } = &put.operation else {
            panic!("a put")
        };
        assert_eq!((put_key, *put_lease), (&key(store, "alice", "t-1"), lease));
        assert!(open(store, put_key, value, "alice", "t-1", NOW).is_some());
        assert_eq!(write_step(store, &host, Some(&kept), Some(&StoreOutcome::Written), false), Write::Done);
        assert_eq!(host.counter(metrics::STORE_WRITE_FAILED), 0);
        // A failed step: done all the same, counted.
        let failed = StoreOutcome::Unavailable("store_no_response");
        assert_eq!(write_step(store, &host, Some(&kept), Some(&failed), false), Write::Done);
        assert_eq!(host.counter(metrics::STORE_WRITE_FAILED), 1);
        // A token about to expire: etcd's shortest lease.
        host.set_now(NOW + 599);
        let Write::Wait(short) = write_step(store, &host, Some(&kept), None, false) else {
            panic!("a lease")
        };
        assert_eq!(short.operation, EtcdOperation::GrantLease { ttl_secs: 2 });
    }
}
