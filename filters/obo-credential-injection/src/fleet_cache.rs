//! Exchanged tokens shared by a fleet of Envoys through etcd (issue 16; with
//! a `store` section). On a miss of the worker memo and the shared-data
//! slots, a request reads the store entry named by the store's keyed hash of
//! the cache key (itself a hash of the target and the subject token: the
//! subject token is never a key or a value in the clear). A hit is opened
//! (ChaCha20-Poly1305, bound to [`PURPOSE`] and to its store key), checked
//! to be for this cache key and still usable, cached and injected. A miss,
//! and any fault of the store, is exchanged at the IdP as without a store:
//! the IdP is the authority, the store only saves calls.
//!
//! A miss of the store is exchanged once for the fleet
//! ([`baton_filter_kit::fleet`]): the replica that claims the exchange under
//! the token's store key calls the IdP, the others read the key until the
//! token is there. A claim is [`PENDING`] under the key: a read finding it
//! is a miss (`pending`), not a rejected value.
//!
//! An exchanged token is written back with no request waiting: a lease for
//! its remaining usable life (none when that is under etcd's minimum TTL),
//! then a put with it, over the claim. An exchange that failed, or whose
//! token is not shared, deletes the claim so the others need not wait for
//! its lease to end. A write that fails is counted and logged (never the
//! token, nor a key); the request already has its token.

use baton_filter_kit::fleet::{FleetFlight, PENDING};
use baton_filter_kit::host::{Host, LogLevel};
use baton_filter_kit::store::{
    EtcdAnswer, EtcdError, EtcdOperation, LeaseId, StoreCall, StoreConfig, fault_label, log_fault,
};
use baton_token::TokenHash;

use crate::issued::{IssuedToken, decode, encode};
use crate::metrics;
use crate::model::Idp;

/// What a stored token is bound to (with its store key): a value sealed
/// with the same keys for any other use does not open as an issued token.
pub const PURPOSE: &[u8] = b"baton obo issued token v1";
/// Kind of the store entry (what its keyed name is a hash of, with the
/// cache key).
const KIND: &str = "obo issued token";
/// etcd's minimum lease TTL: a token usable for less is not written.
pub const MIN_TTL_SECS: u64 = 2;
/// Writes waiting for their lease at most; more are dropped (counted as
/// failed).
const MAX_PENDING_WRITES: usize = 64;

/// The store key of the token cached under `cache_key`, issued by `idp`.
/// The cache key names the IdP by its name in this configuration; the
/// entry's name adds what the IdP is (its authority, token path, issuer and
/// the gateway's client id there), so a deployment sharing the store and
/// its keys whose IdP of that name is another never reads this one's
/// tokens.
pub fn store_key(store: &StoreConfig, cache_key: &TokenHash, idp: &Idp) -> Vec<u8> {
    let endpoint = &idp.endpoint;
    store.key(
        KIND,
        &[
            cache_key.as_bytes(),
            endpoint.authority.as_bytes(),
            endpoint.path.as_bytes(),
            endpoint.client_auth.client_id().as_bytes(),
            idp.issuer.as_deref().unwrap_or_default().as_bytes(),
        ],
    )
}

/// The associated data of the value stored under `key`.
fn bound_to(key: &[u8]) -> Vec<u8> {
    [PURPOSE, key].concat()
}

/// How an exchange at `idp` under `key` is made once for the fleet: claimed
/// for as long as the IdP's call may take (and at least etcd's minimum).
pub fn fleet_flight(store: &StoreConfig, key: &TokenHash, idp: &Idp) -> FleetFlight {
    let call_secs = idp.endpoint.timeout_ms.div_ceil(1000) + 1;
    FleetFlight {
        key: store_key(store, key, idp),
        claim_ttl_secs: u32::try_from(call_secs.max(MIN_TTL_SECS)).unwrap_or(u32::MAX),
    }
}

/// What reading the store brought a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRead {
    /// A value (sealed; not yet opened).
    Found(Vec<u8>),
    /// Nothing under the key.
    Absent,
    /// The store did not answer, refused, or answered garbage (audit label).
    Unavailable(&'static str),
}

/// The read that looks for `cache_key`'s token (named by the cache key: the
/// request decided again finds its answer under it).
pub fn read(store: &StoreConfig, cache_key: TokenHash, idp: &Idp) -> StoreCall {
    StoreCall { key: cache_key, operation: EtcdOperation::Get { key: store_key(store, &cache_key, idp) } }
}

/// Reads an etcd answer to a [`read`].
pub fn read_outcome(host: &dyn Host, cluster: &str, answer: Result<EtcdAnswer, EtcdError>) -> StoreRead {
    let error = match answer {
        Ok(EtcdAnswer::Value(Some(found))) => return StoreRead::Found(found.value),
        Ok(EtcdAnswer::Value(None)) => return StoreRead::Absent,
        Ok(_) => EtcdError::Malformed(String::new()),
        Err(error) => error,
    };
    log_fault(host, cluster, "read", &error);
    StoreRead::Unavailable(fault_label(&error))
}

/// Why a stored value is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unused {
    /// It did not open (another key, another purpose, tampered with, a key
    /// id no longer configured) or is not an entry.
    NotAuthentic,
    /// It is for another cache key.
    OtherKey,
    /// It is no longer usable.
    Expired,
    /// Another replica's claim: the exchange is being made.
    Pending,
}

/// Opens the value found under `cache_key`'s store key, usable at `now`
/// and not beyond `not_after` (the subject token's `exp` minus the margin).
pub fn open(
    store: &StoreConfig,
    cache_key: &TokenHash,
    idp: &Idp,
    sealed: &[u8],
    now: u64,
    not_after: Option<u64>,
) -> Result<IssuedToken, Unused> {
    if sealed == PENDING {
        return Err(Unused::Pending);
    }
    let key = store_key(store, cache_key, idp);
    let plaintext = store.keys.open(&bound_to(&key), sealed).map_err(|_| Unused::NotAuthentic)?;
    let (for_key, entry) = plaintext.split_at_checked(32).ok_or(Unused::NotAuthentic)?;
    if for_key != cache_key.as_bytes() {
        return Err(Unused::OtherKey);
    }
    let token = decode(entry).ok_or(Unused::NotAuthentic)?;
    let use_until = not_after.map_or(token.use_until, |not_after| token.use_until.min(not_after));
    if now >= use_until {
        return Err(Unused::Expired);
    }
    Ok(IssuedToken::new(token.token, token.token_type, use_until, token.refresh_at.min(use_until)))
}

/// A token sealed and waiting for its lease.
#[derive(Debug)]
struct PendingWrite {
    cache_key: TokenHash,
    key: Vec<u8>,
    sealed: Vec<u8>,
}

/// Writes of exchanged tokens, as store operations no request waits for.
#[derive(Debug, Default)]
pub struct StoreWrites {
    /// Operations to dispatch.
    queued: Vec<StoreCall>,
    /// Sealed tokens whose lease was asked for.
    pending: Vec<PendingWrite>,
}

impl StoreWrites {
    /// Queues the write of `token`, just exchanged for `cache_key`: a lease
    /// for its remaining usable life, then the sealed token with it (over
    /// the fleet's claim). A token not written releases the claim.
    pub fn queue(
        &mut self,
        host: &dyn Host,
        store: &StoreConfig,
        cache_key: TokenHash,
        idp: &Idp,
        token: &IssuedToken,
    ) {
        let ttl = token.use_until.saturating_sub(host.now_unix_secs());
        if ttl < MIN_TTL_SECS {
            return self.release(store, cache_key, idp);
        }
        if self.pending.len() >= MAX_PENDING_WRITES {
            host.count(metrics::STORE_WRITE_FAILED);
            host.log(LogLevel::Warn, "store write dropped: too many writes wait for a lease");
            return self.release(store, cache_key, idp);
        }
        let key = store_key(store, &cache_key, idp);
        let plaintext = [cache_key.as_bytes().as_slice(), &encode(token)].concat();
        let Ok(sealed) = store.keys.seal(host, &bound_to(&key), &plaintext) else {
            host.count(metrics::STORE_WRITE_FAILED);
            host.log(LogLevel::Warn, "store write dropped: the token could not be sealed (no randomness)");
            return self.release(store, cache_key, idp);
        };
        let ttl_secs = u32::try_from(ttl).unwrap_or(u32::MAX);
        self.queued.push(StoreCall { key: cache_key, operation: EtcdOperation::GrantLease { ttl_secs } });
        self.pending.push(PendingWrite { cache_key, key, sealed });
    }

    /// The operations to dispatch now.
    pub fn take(&mut self) -> Vec<StoreCall> {
        std::mem::take(&mut self.queued)
    }

    /// Deletes the claim under `cache_key`'s store key (the exchange
    /// failed, or its token is not shared) so the other replicas claim
    /// again now rather than when its lease ends.
    pub fn release(&mut self, store: &StoreConfig, cache_key: TokenHash, idp: &Idp) {
        let key = store_key(store, &cache_key, idp);
        self.queued.push(StoreCall { key: cache_key, operation: EtcdOperation::Delete { key } });
    }

    /// Takes the answer to a write step: a lease queues the put, a put
    /// done is counted; any fault is counted and logged.
    pub fn finish(
        &mut self,
        host: &dyn Host,
        cluster: &str,
        call: &StoreCall,
        answer: Result<EtcdAnswer, EtcdError>,
    ) {
        let error = match (&call.operation, answer) {
            (EtcdOperation::GrantLease { .. }, answer) => {
                let Some(at) = self.pending.iter().position(|write| write.cache_key == call.key) else {
                    return;
                };
                let write = self.pending.swap_remove(at);
                match answer {
                    Ok(EtcdAnswer::Lease(lease)) => {
                        self.queued.push(put(write, lease.id));
                        return;
                    }
                    // No token goes over the claim: release it.
                    Ok(_) => {
                        self.queued.push(delete(write));
                        EtcdError::Malformed(String::new())
                    }
                    Err(error) => {
                        self.queued.push(delete(write));
                        error
                    }
                }
            }
            (_, Ok(EtcdAnswer::Written)) => {
                host.count(metrics::STORE_WRITTEN);
                return;
            }
            (_, Ok(EtcdAnswer::Deleted(_))) => return,
            // A put that failed leaves the claim: release it.
            (EtcdOperation::Put { key, .. }, answer) => {
                self.queued
                    .push(StoreCall { key: call.key, operation: EtcdOperation::Delete { key: key.clone() } });
                match answer {
                    Ok(_) => EtcdError::Malformed(String::new()),
                    Err(error) => error,
                }
            }
            (_, Ok(_)) => EtcdError::Malformed(String::new()),
            (_, Err(error)) => error,
        };
        host.count(metrics::STORE_WRITE_FAILED);
        log_fault(host, cluster, "write", &error);
    }
}

fn delete(write: PendingWrite) -> StoreCall {
    StoreCall { key: write.cache_key, operation: EtcdOperation::Delete { key: write.key } }
}

fn put(write: PendingWrite, lease: LeaseId) -> StoreCall {
    StoreCall {
        key: write.cache_key,
        operation: EtcdOperation::Put { key: write.key, value: write.sealed, lease },
    }
}

#[cfg(test)]
mod tests {
    use baton_filter_kit::store::{Lease, compile_store};
    use baton_filter_kit::test_host::TestHost;
    use baton_filter_kit::token_calls::TokenEndpoint;
    use baton_token::oauth::ClientAuth;
    use baton_token::secret::Secret;
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn store() -> StoreConfig {
        let spec = json!({"etcd": {"cluster": "etcd"}, "currentKey": "k1",
                          "sealingKeys": [{"id": "k1", "secret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]});
        compile_store(serde_json::from_value(spec).unwrap(), "store").unwrap()
    }

    fn idp(path: &str) -> Idp {
        let endpoint = TokenEndpoint {
            cluster: "idp".into(),
            path: path.into(),
            authority: "idp.example".into(),
            timeout_ms: 1000,
            client_auth: ClientAuth::Public { client_id: "gateway".into() },
        };
        Idp { name: "corp".into(), issuer: None, endpoint }
    }

    /// What a write of `token` for `key` puts in the store (key, value).
    fn written(
        store: &StoreConfig,
        host: &TestHost,
        key: TokenHash,
        token: &IssuedToken,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut writes = StoreWrites::default();
        writes.queue(host, store, key, &idp("/token"), token);
        let [grant] = &writes.take()[..] else { panic!("one lease first") };
        assert_eq!(grant.operation, EtcdOperation::GrantLease { ttl_secs: 100 });
        let lease = Lease { id: LeaseId::new(7).unwrap(), ttl_secs: 100 };
        writes.finish(host, "etcd", grant, Ok(EtcdAnswer::Lease(lease)));
        let [put] = &writes.take()[..] else { panic!("then the put") };
        let EtcdOperation::Put { key, value, lease } = &put.operation else { panic!("{put:?}") };
        assert_eq!(lease.get(), 7);
        (key.clone(), value.clone())
    }

    #[test]
    fn a_stored_token_opens_for_its_cache_key_only_and_while_usable() {
        let (store, host) = (store(), TestHost::new(NOW));
        let (alice, bob) = (TokenHash::of(b"alice's exchange"), TokenHash::of(b"bob's exchange"));
        let token = IssuedToken::new(Secret::new("t0k3n"), "Bearer".into(), NOW + 100, NOW + 80);
        let (key, value) = written(&store, &host, alice, &token);
        assert_eq!(key, store_key(&store, &alice, &idp("/token")));
        let opened = open(&store, &alice, &idp("/token"), &value, NOW, None).unwrap();
        assert_eq!((opened.token.expose(), opened.use_until), ("t0k3n", NOW + 100));
        assert_eq!(open(&store, &alice, &idp("/token"), &value, NOW + 100, None), Err(Unused::Expired));
        let bounded = open(&store, &alice, &idp("/token"), &value, NOW, Some(NOW + 50)).unwrap();
        assert_eq!((bounded.use_until, bounded.refresh_at), (NOW + 50, NOW + 50), "never past the subject's");
        assert_eq!(
            open(&store, &alice, &idp("/token"), &value, NOW + 50, Some(NOW + 50)),
            Err(Unused::Expired)
        );
        // Named for another IdP of the same name, it does not open.
        assert_ne!(store_key(&store, &alice, &idp("/other")), key);
        assert_eq!(open(&store, &alice, &idp("/other"), &value, NOW, None), Err(Unused::NotAuthentic));
        // Under another key's name it does not open (bound to its own).
        assert_eq!(open(&store, &bob, &idp("/token"), &value, NOW, None), Err(Unused::NotAuthentic));
        // Bound to bob's name but holding alice's entry: not bob's.
        let plaintext = [alice.as_bytes().as_slice(), &encode(&token)].concat();
        let forged =
            store.keys.seal(&host, &bound_to(&store_key(&store, &bob, &idp("/token"))), &plaintext).unwrap();
        assert_eq!(open(&store, &bob, &idp("/token"), &forged, NOW, None), Err(Unused::OtherKey));
        // Sealed for another purpose with the same keys.
        let other = store.keys.seal(&host, &store_key(&store, &alice, &idp("/token")), &plaintext).unwrap();
        assert_eq!(open(&store, &alice, &idp("/token"), &other, NOW, None), Err(Unused::NotAuthentic));
        assert_eq!(open(&store, &alice, &idp("/token"), b"garbage", NOW, None), Err(Unused::NotAuthentic));
    }

    #[test]
    fn a_write_fault_is_counted_and_logged_without_the_key() {
        let (store, host) = (store(), TestHost::new(NOW));
        let cache_key = TokenHash::of(b"exchange");
        let token = IssuedToken::new(Secret::new("t0k3n"), "Bearer".into(), NOW + 100, NOW + 80);
        let mut writes = StoreWrites::default();
        writes.queue(&host, &store, cache_key, &idp("/token"), &token);
        let grant = writes.take().remove(0);
        let refused = EtcdError::Refused { status: 404, code: Some(5), message: "lease not found".into() };
        writes.finish(&host, "etcd", &grant, Err(refused));
        let key = store_key(&store, &cache_key, &idp("/token"));
        let [release] = &writes.take()[..] else { panic!("no put without a lease: the claim is released") };
        assert_eq!(release.operation, EtcdOperation::Delete { key: key.clone() });
        assert_eq!(host.counter(metrics::STORE_WRITE_FAILED), 1);
        let key = String::from_utf8(key).unwrap();
        let logs = host.logs();
        assert!(logs.iter().any(|(_, line)| line.contains("store write failed: store_refused status=404")));
        assert!(logs.iter().all(|(_, line)| !line.contains(&key) && !line.contains("t0k3n")));
        // Nothing is written for a token usable under etcd's minimum TTL.
        let short = IssuedToken::new(Secret::new("t0k3n"), "Bearer".into(), NOW + MIN_TTL_SECS - 1, NOW);
        writes.queue(&host, &store, cache_key, &idp("/token"), &short);
        let [release] = &writes.take()[..] else { panic!("only the claim's release") };
        assert!(matches!(release.operation, EtcdOperation::Delete { .. }));
    }
}
