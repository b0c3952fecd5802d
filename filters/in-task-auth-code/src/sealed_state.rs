//! A pending authorization carried in its own `state`, for a fleet of
//! Envoys (issue 16; with a `store` section). The `state` is the
//! authorization itself, sealed (ChaCha20-Poly1305, see
//! [`baton_filter_kit::store::seal`]) with the store's current key and bound
//! to [`PURPOSE`] and to the authorization server it was issued for (its
//! issuer, client id and redirect URI), so any replica with the keys opens
//! it from the request alone, and nothing else sealed with those keys (nor
//! a `state` of another in-task filter sharing them) passes for a `state`. Its
//! single use is agreed in the store: a create-if-absent mark, named under
//! the key that sealed the `state` (named under the current key, a rotation
//! would let a `state` sealed just before it be used once more), leased
//! until the `state` expires (plus [`MARK_MARGIN_SECS`] for clocks that
//! differ between replicas).
//!
//! The steps of a use, each a callout the request waits for: a read of the
//! mark, then (absent) a lease grant and the create-if-absent. Found by the
//! read: it was used already, refused for one read and no lease (a replayed
//! `state` cannot make etcd grant a lease per replay). Created: this request
//! used the `state`. Found by the create-if-absent (another request got
//! there between the read and the write): used already; the create-if-absent
//! alone decides who used it, the read only refuses early. Anything else
//! (no answer, a refusal, garbage): the store is unavailable, and the
//! request goes no further. An expired `state` is refused before the first
//! step and asks nothing of the store. A misuse (the caller's checks of
//! user, task, context and server refuse the request) takes the same steps
//! and is refused after them: a misuse ends the authorization fleet-wide,
//! as it does in one Envoy.
//!
//! With `userBinding.primaryLogin` the `state` in the authorization link
//! binds no browser; the sign-in ([`crate::login`]) issues, for the browser
//! that signed in as the user, a bound `state` to the bank: the same
//! authorization with that browser's id and the mark of the `state` it
//! came from, so every `state` of one authorization shares one single use.

use baton_filter_kit::host::Host;
use baton_filter_kit::store::{
    EtcdAnswer, EtcdError, EtcdOperation, LeaseId, StoreCall, StoreConfig, fault_label, key_id_of, log_fault,
};
use baton_token::secret::Secret;
use baton_token::{TokenHash, base64url};
use serde::{Deserialize, Serialize};

use crate::model::AuthorizationServer;
use crate::store::{PendingAuthorization, StateProblem};

/// What a sealed `state` is bound to (the seal's associated data, with
/// the authorization server, see [`bound_to`]): a value sealed for any
/// other use of the same keys does not open as a `state`.
pub const PURPOSE: &[u8] = b"baton in-task-auth-code state v1";
/// Longest `state` accepted with a store: the sealed authorization, in
/// base64url. A `state` issued longer (long user, task or context ids) is
/// refused when issued, not sent to a browser that would cut it.
pub const MAX_SEALED_STATE_CHARS: usize = 1024;
/// Longest bound `state` (one issued at a sign-in, see [`seal_bound`]):
/// room for the browser's id and the mark's name on top of the longest
/// `state` issued, so every authorization that could be issued can be
/// completed.
pub const MAX_BOUND_STATE_CHARS: usize = MAX_SEALED_STATE_CHARS + 320;
/// Longest `state` accepted without a store (43 characters are issued).
pub const MAX_LOCAL_STATE_CHARS: usize = 256;
/// How long a single-use mark outlives its `state`, for replicas whose
/// clocks are behind etcd's.
pub const MARK_MARGIN_SECS: u64 = 60;
/// Kind of the store entry that marks a `state` used.
const MARK_KIND: &str = "in-task state used";
/// What a mark holds (nothing is read back from it).
pub(crate) const MARK_VALUE: &[u8] = b"used";

/// The sealed form: short names, the state is a URL parameter.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    u: String,
    t: String,
    c: String,
    v: Secret,
    e: u64,
    /// The browser that signed in as the user (a bound `state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    /// The single-use mark of the authorization (a bound `state`: its
    /// link's `state`'s), when not this `state`'s own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
}

/// A `state` opened: what it stands for, and where its single use is marked.
#[derive(Debug)]
pub struct OpenedState {
    /// The pending authorization.
    pub pending: PendingAuthorization,
    /// The store key of its single-use mark.
    pub(crate) mark: Vec<u8>,
    /// What the steps of its use are named by (see [`StoreCall::key`]).
    pub step_key: TokenHash,
}

impl OpenedState {
    /// What the use of another sealed value of `pending` (a sign-in's
    /// `state`) goes through: its own `mark`, its steps named `step_key`.
    pub(crate) fn with_mark(pending: PendingAuthorization, mark: Vec<u8>, step_key: TokenHash) -> Self {
        Self { pending, mark, step_key }
    }
}

/// Why no sealed `state` was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealProblem {
    /// No randomness for the nonce.
    NoRandomness,
    /// Longer than [`MAX_SEALED_STATE_CHARS`].
    TooLong,
}

/// The associated data of a `state` issued for `idp`: [`PURPOSE`], then a
/// hash of the server's issuer, client id and redirect URI (each
/// length-prefixed), so a `state` issued by an in-task filter for another
/// server, sharing the keys, does not open here.
fn bound_to(idp: &AuthorizationServer) -> Vec<u8> {
    bound_to_server(PURPOSE, idp)
}

/// `purpose`, then a hash of `server`'s issuer, client id and redirect URI.
pub(crate) fn bound_to_server(purpose: &[u8], server: &AuthorizationServer) -> Vec<u8> {
    let server = TokenHash::of_parts(&[
        server.issuer.as_bytes(),
        server.token_endpoint.client_auth.client_id().as_bytes(),
        server.redirect_uri.as_bytes(),
    ]);
    [purpose, server.as_bytes()].concat()
}

/// Seals `pending`, issued for `idp`, into a `state`.
pub fn seal(
    store: &StoreConfig,
    idp: &AuthorizationServer,
    host: &dyn Host,
    pending: &PendingAuthorization,
) -> Result<String, SealProblem> {
    seal_with(store, idp, host, pending, None)
}

/// Seals `pending` (whose `browser` signed in as its user) into a bound
/// `state` that shares the single-use `mark` of the `state` it comes from.
pub fn seal_bound(
    store: &StoreConfig,
    idp: &AuthorizationServer,
    host: &dyn Host,
    pending: &PendingAuthorization,
    mark: &[u8],
) -> Result<String, SealProblem> {
    seal_with(store, idp, host, pending, Some(mark))
}

fn seal_with(
    store: &StoreConfig,
    idp: &AuthorizationServer,
    host: &dyn Host,
    pending: &PendingAuthorization,
    mark: Option<&[u8]>,
) -> Result<String, SealProblem> {
    let sealed = Sealed {
        u: pending.user.clone(),
        t: pending.task_id.clone(),
        c: pending.context_id.clone(),
        v: pending.verifier.clone(),
        e: pending.expires_at,
        b: pending.browser.clone(),
        m: mark.map(|mark| String::from_utf8_lossy(mark).into_owned()),
    };
    let max = if mark.is_some() { MAX_BOUND_STATE_CHARS } else { MAX_SEALED_STATE_CHARS };
    seal_value(store, host, &bound_to(idp), &sealed, max)
}

/// `value`, as JSON, sealed for `associated_data` into base64url of at most
/// `max_chars`.
pub(crate) fn seal_value(
    store: &StoreConfig,
    host: &dyn Host,
    associated_data: &[u8],
    value: &impl Serialize,
    max_chars: usize,
) -> Result<String, SealProblem> {
    // Plain strings and numbers: serializing cannot fail; if it did, no
    // state would be issued.
    let plaintext = serde_json::to_vec(value).map_err(|_| SealProblem::TooLong)?;
    let bytes = store.keys.seal(host, associated_data, &plaintext).map_err(|_| SealProblem::NoRandomness)?;
    let state = base64url::encode(&bytes);
    if state.len() > max_chars {
        return Err(SealProblem::TooLong);
    }
    Ok(state)
}

/// Opens a `state` of `idp` (whatever its expiry: the caller checks it
/// when the state is used). Not base64url, not sealed, sealed with a key no
/// longer configured, for another purpose or server, or tampered with:
/// unknown.
pub fn open(
    store: &StoreConfig,
    idp: &AuthorizationServer,
    state: &str,
) -> Result<OpenedState, StateProblem> {
    if state.len() > MAX_BOUND_STATE_CHARS {
        return Err(StateProblem::Unknown);
    }
    let bytes = base64url::decode(state).map_err(|_| StateProblem::Unknown)?;
    let plaintext = store.keys.open(&bound_to(idp), &bytes).map_err(|_| StateProblem::Unknown)?;
    let sealed: Sealed = serde_json::from_slice(&plaintext).map_err(|_| StateProblem::Unknown)?;
    let mark = match sealed.m {
        Some(mark) => mark.into_bytes(),
        None => {
            let key_id = key_id_of(&bytes).map_err(|_| StateProblem::Unknown)?;
            store.key_under(key_id, MARK_KIND, &[&bytes]).ok_or(StateProblem::Unknown)?
        }
    };
    Ok(OpenedState {
        pending: PendingAuthorization {
            user: sealed.u,
            task_id: sealed.t,
            context_id: sealed.c,
            verifier: sealed.v,
            expires_at: sealed.e,
            used: false,
            login: None,
            browser: sealed.b,
        },
        mark,
        step_key: TokenHash::of_parts(&[b"state-mark", state.as_bytes()]),
    })
}

/// What a store step brought a request using a sealed `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The read found no mark: the `state` is not used yet (for a task
    /// record: none in the store).
    Unused,
    /// The read found a value: for a mark, the `state` was used already;
    /// for a task record, the sealed record.
    Found(Vec<u8>),
    /// A put or a delete done (a task record).
    Written,
    /// A lease for the mark.
    Lease(LeaseId),
    /// The mark is this request's: the `state` is used, by it.
    Marked,
    /// The mark existed: the `state` was used already.
    AlreadyUsed,
    /// The store did not answer, refused, or answered garbage (audit label).
    Unavailable(&'static str),
}

/// Reads an etcd answer (or its absence) as a [`StoreOutcome`], logging a
/// fault (etcd's own words, never a key or value).
pub fn outcome(host: &dyn Host, cluster: &str, answer: Result<EtcdAnswer, EtcdError>) -> StoreOutcome {
    let error = match answer {
        Ok(EtcdAnswer::Value(None)) => return StoreOutcome::Unused,
        Ok(EtcdAnswer::Value(Some(found))) => return StoreOutcome::Found(found.value),
        Ok(EtcdAnswer::AlreadyExists(_)) => return StoreOutcome::AlreadyUsed,
        Ok(EtcdAnswer::Written | EtcdAnswer::Deleted(_)) => return StoreOutcome::Written,
        Ok(EtcdAnswer::Lease(lease)) => return StoreOutcome::Lease(lease.id),
        Ok(EtcdAnswer::Created) => return StoreOutcome::Marked,
        Err(error) => error,
    };
    log_fault(host, cluster, "call", &error);
    StoreOutcome::Unavailable(fault_label(&error))
}

/// Where the use of a sealed `state` stands.
#[derive(Debug, PartialEq)]
pub enum Use {
    /// Wait for this store step.
    Wait(StoreCall),
    /// This request used the `state`.
    Used,
    /// Refused: the `state` is expired or was used.
    Refused(StateProblem),
    /// The store is unavailable (audit label).
    Unavailable(&'static str),
}

/// The next step of using `opened` at `now`, given the outcome of the last
/// store step (`None` before the first): read the mark; absent, lease and
/// create it. An expired `state` is refused before the read and before the
/// lease.
pub fn use_step(opened: &OpenedState, last: Option<&StoreOutcome>, now: u64) -> Use {
    let call = |operation| Use::Wait(StoreCall { key: opened.step_key, operation });
    match last {
        None | Some(StoreOutcome::Unused) if now >= opened.pending.expires_at => {
            Use::Refused(StateProblem::Expired)
        }
        None => call(EtcdOperation::Get { key: opened.mark.clone() }),
        Some(StoreOutcome::Unused) => {
            let left = opened.pending.expires_at.saturating_sub(now).saturating_add(MARK_MARGIN_SECS);
            call(EtcdOperation::GrantLease { ttl_secs: u32::try_from(left).unwrap_or(u32::MAX) })
        }
        Some(StoreOutcome::Lease(lease)) => call(EtcdOperation::CreateIfAbsent {
            key: opened.mark.clone(),
            value: MARK_VALUE.to_vec(),
            lease: *lease,
        }),
        Some(StoreOutcome::Marked) => Use::Used,
        Some(StoreOutcome::AlreadyUsed | StoreOutcome::Found(_)) => Use::Refused(StateProblem::Reused),
        Some(StoreOutcome::Unavailable(why)) => Use::Unavailable(why),
        // A put answers no step of a use.
        Some(StoreOutcome::Written) => Use::Unavailable("store_malformed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_filter_kit::test_host::TestHost;
    use serde_json::{Value, json};

    use crate::model::FilterConfig;

    const NOW: u64 = 1_800_000_000;
    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    /// The test configuration with a store, changed by `change`.
    fn config_with(change: impl FnOnce(&mut Value)) -> FilterConfig {
        let mut config = crate::config::tests::base();
        config["store"] = json!({"etcd": {"cluster": "etcd"}, "sealingKeys": [{"id": "k1", "secret": K1}], "currentKey": "k1"});
        change(&mut config);
        crate::config::parse(config.to_string().as_bytes()).unwrap()
    }

    fn config() -> FilterConfig {
        config_with(|_| {})
    }

    fn store(config: &FilterConfig) -> &StoreConfig {
        config.shared_store.as_ref().unwrap()
    }

    fn seal_for(
        config: &FilterConfig,
        host: &TestHost,
        pending: &PendingAuthorization,
    ) -> Result<String, SealProblem> {
        seal(store(config), &config.idp, host, pending)
    }

    fn open_for(config: &FilterConfig, state: &str) -> Result<OpenedState, StateProblem> {
        open(store(config), &config.idp, state)
    }

    fn pending(user: &str, task: &str) -> PendingAuthorization {
        PendingAuthorization {
            user: user.into(),
            task_id: task.into(),
            context_id: "8d5bb1c2-7e0a-4f4e-9a55-2f1c3b9e0d11".into(),
            verifier: Secret::new("v".repeat(43)),
            expires_at: NOW + 300,
            used: false,
            login: None,
            browser: None,
        }
    }

    #[test]
    fn a_state_opens_to_what_was_sealed_and_shows_none_of_it() {
        let (host, config) = (TestHost::new(NOW), config());
        let sealed = pending("alice@example.com", "3f2c9a7e-1b4d-4c8e-a0f5-6d7e8f9a0b1c");
        let state = seal_for(&config, &host, &sealed).unwrap();
        // A user's e-mail, two UUIDs and the verifier: well within a URL.
        assert!(state.len() < 300, "{} characters", state.len());
        assert!(state.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)), "{state}");
        assert!(!state.contains("alice") && !state.contains("vvvv"));
        let opened = open_for(&config, &state).unwrap();
        assert_eq!(opened.pending, sealed);
        assert!(String::from_utf8(opened.mark.clone()).unwrap().starts_with("baton/"));
        // Two seals of the same authorization differ (a fresh nonce).
        assert_ne!(seal_for(&config, &host, &sealed).unwrap(), state);
    }

    #[test]
    fn a_state_too_long_for_a_url_is_not_issued() {
        let (host, config) = (TestHost::new(NOW), config());
        let long = pending("alice", &"t".repeat(800));
        assert_eq!(seal_for(&config, &host, &long), Err(SealProblem::TooLong));
        assert_eq!(
            open_for(&config, &"A".repeat(MAX_BOUND_STATE_CHARS + 1)).unwrap_err(),
            StateProblem::Unknown
        );
    }

    #[test]
    fn every_state_that_can_be_issued_can_be_bound_to_a_browser() {
        let (host, config) = (TestHost::new(NOW), config());
        // The longest task id whose `state` is still issued.
        let longest = (1..800).rev().find_map(|len| {
            seal_for(&config, &host, &pending("alice", &"t".repeat(len))).ok().map(|s| (len, s))
        });
        let (len, state) = longest.unwrap();
        assert!(state.len() > MAX_SEALED_STATE_CHARS - 8, "{} characters", state.len());
        let opened = open_for(&config, &state).unwrap();
        let mut bound = pending("alice", &"t".repeat(len));
        bound.browser = Some("b".repeat(64));
        let bound_state = seal_bound(store(&config), &config.idp, &host, &bound, &opened.mark).unwrap();
        let reopened = open_for(&config, &bound_state).unwrap();
        assert_eq!((reopened.pending.browser, reopened.mark), (bound.browser, opened.mark));
    }

    #[test]
    fn steps_of_a_use() {
        let (host, config) = (TestHost::new(NOW), config());
        let state = seal_for(&config, &host, &pending("alice", "t-1")).unwrap();
        let opened = open_for(&config, &state).unwrap();
        let Use::Wait(read) = use_step(&opened, None, NOW) else { panic!("a read first") };
        assert_eq!(read.operation, EtcdOperation::Get { key: opened.mark.clone() });
        let Use::Wait(grant) = use_step(&opened, Some(&StoreOutcome::Unused), NOW + 10) else {
            panic!("then a lease")
        };
        assert_eq!(grant.operation, EtcdOperation::GrantLease { ttl_secs: 290 + MARK_MARGIN_SECS as u32 });
        assert_eq!(grant.key, read.key);
        let lease = LeaseId::new(7).unwrap();
        let Use::Wait(create) = use_step(&opened, Some(&StoreOutcome::Lease(lease)), NOW) else {
            panic!("then the mark")
        };
        assert_eq!(
            create.operation,
            EtcdOperation::CreateIfAbsent { key: opened.mark.clone(), value: MARK_VALUE.to_vec(), lease }
        );
        assert_eq!(use_step(&opened, Some(&StoreOutcome::Marked), NOW), Use::Used);
        assert_eq!(
            use_step(&opened, Some(&StoreOutcome::AlreadyUsed), NOW),
            Use::Refused(StateProblem::Reused)
        );
        assert_eq!(use_step(&opened, None, NOW + 300), Use::Refused(StateProblem::Expired));
        // Expired between the read and the lease: no lease either.
        assert_eq!(
            use_step(&opened, Some(&StoreOutcome::Unused), NOW + 300),
            Use::Refused(StateProblem::Expired)
        );
    }

    #[test]
    fn a_read_of_the_mark_is_an_outcome() {
        let host = TestHost::new(NOW);
        let read = EtcdOperation::Get { key: b"baton/m".to_vec() };
        let header = r#""header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"}"#;
        // etcd 3.4 leaves `kvs` and `count` out of a range that found nothing.
        let absent = read.parse(200, format!("{{{header}}}").as_bytes());
        assert_eq!(outcome(&host, "etcd", absent), StoreOutcome::Unused);
        let found = format!(
            r#"{{{header},"kvs":[{{"key":"YmF0b24vbQ==","create_revision":"3","mod_revision":"3","version":"1","value":"dXNlZA==","lease":"7"}}],"count":"1"}}"#
        );
        assert_eq!(
            outcome(&host, "etcd", read.parse(200, found.as_bytes())),
            StoreOutcome::Found(b"used".to_vec())
        );
        // A range naming another key is no answer, never "unused".
        let other = found.replace("YmF0b24vbQ==", "b3RoZXI=");
        assert_eq!(
            outcome(&host, "etcd", read.parse(200, other.as_bytes())),
            StoreOutcome::Unavailable("store_malformed")
        );
    }

    #[test]
    fn a_state_opens_only_for_the_server_it_was_issued_for() {
        let (host, config) = (TestHost::new(NOW), config());
        let state = seal_for(&config, &host, &pending("alice", "t-1")).unwrap();
        // The same keys, another in-task filter: another client, redirect
        // URI or issuer.
        let others = [
            config_with(|c| c["secondaryIdp"]["clientId"] = json!("other-gateway")),
            config_with(|c| c["secondaryIdp"]["redirectUri"] = json!("https://gw.example/other/callback")),
            config_with(|c| c["secondaryIdp"]["issuer"] = json!("https://bank.example/other")),
        ];
        for other in &others {
            assert_eq!(open_for(other, &state).unwrap_err(), StateProblem::Unknown);
        }
        // A name shown to users is not part of it.
        let renamed = config_with(|c| c["secondaryIdp"]["name"] = json!("Bank"));
        assert_eq!(open_for(&renamed, &state).unwrap().pending.task_id, "t-1");
    }
}
