//! Verification keys per provider: inline keys, and remote key sets fetched
//! through an Envoy cluster, shared by all workers.
//!
//! Every worker runs its own VM, so coordination goes through shared data:
//! - `…jwks.<p>.doc`: the last good key set (version, fetch time, JSON);
//! - `…jwks.<p>.ver`: its version and fetch time alone, cheap to poll;
//! - `…jwks.<p>.fetch`: a fetch lease (one worker fetches at a time) and
//!   the failure count that drives retry backoff.
//!
//! A failed refresh never replaces the last good set. The decisions here are
//! pure; the filter's root context performs the fetch these functions ask
//! for (see [`crate::callout`]).

use std::rc::Rc;

use baton_token::jwk::{JwkSet, JwksError};
use baton_token::verify::VerifierSet;

use crate::config::{KeySource, Provider, RemoteJwks};
use crate::host::{Host, LogLevel};

/// The counters a key store increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksMetrics {
    /// A key set was fetched and loaded.
    pub fetch_success: crate::host::Counter,
    /// A fetch failed (transport, status or content).
    pub fetch_failure: crate::host::Counter,
}

/// Largest key set document accepted from an IdP.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;

/// What to fetch, once a worker holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Provider index.
    pub provider: usize,
    /// Envoy cluster.
    pub cluster: String,
    /// Request path.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Timeout.
    pub timeout_ms: u64,
}

/// Why a fetch produced no usable key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The call could not be dispatched (unknown cluster, ...).
    Dispatch,
    /// No response: timeout or connection reset.
    NoResponse,
    /// The IdP answered with a non-200 status.
    Status(u16),
    /// The body is too large.
    TooLarge,
    /// The body is not a usable key set.
    Content(JwksError),
    /// No key of the set could be imported.
    NoUsableKey,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Dispatch => f.write_str("call could not be dispatched (is the cluster defined?)"),
            FetchError::NoResponse => f.write_str("no response (timeout or connection failure)"),
            FetchError::Status(status) => write!(f, "HTTP status {status}"),
            FetchError::TooLarge => write!(f, "body larger than {MAX_JWKS_BYTES} bytes"),
            FetchError::Content(err) => write!(f, "body is not a usable JWKS: {err}"),
            FetchError::NoUsableKey => f.write_str("no key could be imported"),
        }
    }
}

#[derive(Debug)]
struct ProviderKeys {
    name: String,
    remote: Option<RemoteJwks>,
    current: Option<Rc<VerifierSet>>,
    version: u64,
    fetched_at: u64,
    in_flight: bool,
    wanted: bool,
}

/// Fetch coordination state kept in shared data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FetchState {
    lease_until: u64,
    last_failure_at: u64,
    failures: u32,
}

impl FetchState {
    fn encode(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.lease_until.to_be_bytes());
        out[8..16].copy_from_slice(&self.last_failure_at.to_be_bytes());
        out[16..].copy_from_slice(&self.failures.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        if bytes.len() != 20 {
            return Self::default();
        }
        Self {
            lease_until: read_u64(&bytes[..8]),
            last_failure_at: read_u64(&bytes[8..16]),
            failures: u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
        }
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

/// Keys of every provider, as this worker knows them.
#[derive(Debug)]
pub struct KeyStore {
    providers: Vec<ProviderKeys>,
    prefix: String,
    metrics: JwksMetrics,
}

impl KeyStore {
    /// Inline keys are ready at once; remote ones start empty. `prefix`
    /// names this filter and configuration in shared data, e.g.
    /// `baton.ce.<fingerprint>.`.
    pub fn new(providers: &[Provider], prefix: &str, metrics: JwksMetrics) -> Self {
        let providers = providers
            .iter()
            .map(|provider| {
                let (remote, current) = match &provider.keys {
                    KeySource::Inline(set) => (None, Some(Rc::clone(set))),
                    KeySource::Remote(remote) => (Some(remote.clone()), None),
                };
                ProviderKeys {
                    name: provider.name.clone(),
                    remote,
                    current,
                    version: 0,
                    fetched_at: 0,
                    in_flight: false,
                    wanted: false,
                }
            })
            .collect();
        Self { providers, prefix: format!("{prefix}jwks."), metrics }
    }

    /// Number of providers.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether there are no providers.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Whether a provider's keys are fetched.
    pub fn is_remote(&self, provider: usize) -> bool {
        self.providers.get(provider).is_some_and(|p| p.remote.is_some())
    }

    /// The provider's current keys.
    pub fn current(&self, provider: usize) -> Option<Rc<VerifierSet>> {
        self.providers.get(provider).and_then(|p| p.current.clone())
    }

    /// Loads a newer key set that another worker stored. Returns whether the
    /// keys changed.
    pub fn sync(&mut self, provider: usize, host: &dyn Host) -> bool {
        let prefix = &self.prefix;
        let Some(keys) = self.providers.get_mut(provider) else {
            return false;
        };
        if keys.remote.is_none() {
            return false;
        }
        let Some((ver, _)) = host.shared_get(&format!("{prefix}{provider}.ver")) else {
            return false;
        };
        if ver.len() != 16 || read_u64(&ver[..8]) <= keys.version {
            return false;
        }
        let Some((doc, _)) = host.shared_get(&format!("{prefix}{provider}.doc")) else {
            return false;
        };
        if doc.len() < 16 {
            return false;
        }
        let (version, fetched_at) = (read_u64(&doc[..8]), read_u64(&doc[8..16]));
        match import(&doc[16..], keys.current.as_deref()) {
            Ok(set) => {
                keys.current = Some(Rc::new(set));
                keys.version = version;
                keys.fetched_at = fetched_at;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a request may cause a refetch now (an unknown `kid` after key
    /// rotation): at most once per `minRefetchIntervalSeconds` across all
    /// workers, and not while failures are being backed off.
    pub fn refetch_allowed(&self, provider: usize, host: &dyn Host) -> bool {
        let Some(keys) = self.providers.get(provider) else {
            return false;
        };
        let Some(remote) = &keys.remote else {
            return false;
        };
        let now = host.now_unix_secs();
        now >= keys.fetched_at.saturating_add(remote.min_refetch_interval_secs)
            && !self.backing_off(provider, host, now)
    }

    /// Whether the last fetch failed recently enough that requests should
    /// not wait for another one.
    pub fn backing_off(&self, provider: usize, host: &dyn Host, now: u64) -> bool {
        let Some(remote) = self.providers.get(provider).and_then(|p| p.remote.as_ref()) else {
            return false;
        };
        let state = self.fetch_state(provider, host).0;
        state.failures > 0 && now < state.last_failure_at.saturating_add(backoff_secs(remote, state.failures))
    }

    /// Marks that a request is waiting for a (re)fetch.
    pub fn want_fetch(&mut self, provider: usize) {
        if let Some(keys) = self.providers.get_mut(provider) {
            keys.wanted = true;
        }
    }

    /// Whether this worker should fetch now: keys missing, wanted by a
    /// request, or due for refresh; not already fetching; not backing off.
    /// Takes the cross-worker lease when so.
    pub fn start_fetch(&mut self, provider: usize, host: &dyn Host) -> Option<FetchRequest> {
        let now = host.now_unix_secs();
        let backing_off = self.backing_off(provider, host, now);
        let (state, cas) = self.fetch_state(provider, host);
        let key = format!("{}{provider}.fetch", self.prefix);
        let keys = self.providers.get_mut(provider)?;
        let remote = keys.remote.as_ref()?;
        let due = keys.current.is_none()
            || keys.wanted
            || now >= keys.fetched_at.saturating_add(remote.refresh_interval_secs);
        if !due || keys.in_flight || backing_off || now < state.lease_until {
            return None;
        }
        let lease = FetchState { lease_until: now + remote.timeout_ms.div_ceil(1000) + 2, ..state };
        host.shared_set(&key, &lease.encode(), Some(cas)).ok()?;
        keys.in_flight = true;
        Some(FetchRequest {
            provider,
            cluster: remote.cluster.clone(),
            path: remote.path.clone(),
            authority: remote.authority.clone(),
            timeout_ms: remote.timeout_ms,
        })
    }

    /// Takes the result of a fetch: a good key set is stored for every
    /// worker and used at once; a failure keeps the previous set and backs
    /// off. Counts and logs either way.
    pub fn finish_fetch(&mut self, provider: usize, host: &dyn Host, result: Result<&[u8], FetchError>) {
        let now = host.now_unix_secs();
        let (state, _) = self.fetch_state(provider, host);
        let prefix = self.prefix.clone();
        let Some(keys) = self.providers.get_mut(provider) else {
            return;
        };
        keys.in_flight = false;
        keys.wanted = false;
        let outcome = result.and_then(|body| {
            if body.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            import(body, keys.current.as_deref()).map(|set| (set, body))
        });
        match outcome {
            Ok((set, body)) => {
                let shared_version = host
                    .shared_get(&format!("{prefix}{provider}.ver"))
                    .filter(|(ver, _)| ver.len() == 16)
                    .map_or(0, |(ver, _)| read_u64(&ver[..8]));
                let version = shared_version.max(keys.version) + 1;
                let mut doc = Vec::with_capacity(16 + body.len());
                doc.extend_from_slice(&version.to_be_bytes());
                doc.extend_from_slice(&now.to_be_bytes());
                doc.extend_from_slice(body);
                // Document first, then the version that announces it.
                let _ = host.shared_set(&format!("{prefix}{provider}.doc"), &doc, None);
                let _ = host.shared_set(&format!("{prefix}{provider}.ver"), &doc[..16], None);
                let _ = host.shared_set(
                    &format!("{prefix}{provider}.fetch"),
                    &FetchState::default().encode(),
                    None,
                );
                let kids: Vec<&str> = set.kids().collect();
                host.log(
                    LogLevel::Info,
                    &format!(
                        "jwks provider={} loaded keys={} kids=[{}]",
                        keys.name,
                        set.len(),
                        kids.join(",")
                    ),
                );
                keys.current = Some(Rc::new(set));
                keys.version = version;
                keys.fetched_at = now;
                host.count(self.metrics.fetch_success);
            }
            Err(error) => {
                let failed = FetchState {
                    lease_until: 0,
                    last_failure_at: now,
                    failures: state.failures.saturating_add(1),
                };
                let _ = host.shared_set(&format!("{prefix}{provider}.fetch"), &failed.encode(), None);
                let kept =
                    if keys.current.is_some() { "keeping the last good key set" } else { "no keys yet" };
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "jwks provider={} fetch failed: {error}; {kept}; failures={}",
                        keys.name, failed.failures
                    ),
                );
                host.count(self.metrics.fetch_failure);
            }
        }
    }

    /// Whether any remote provider has no keys, or is wanted: ticks should
    /// then be frequent.
    pub fn needs_attention(&self) -> bool {
        self.providers.iter().any(|p| p.remote.is_some() && (p.current.is_none() || p.wanted || p.in_flight))
    }

    fn fetch_state(&self, provider: usize, host: &dyn Host) -> (FetchState, u32) {
        match host.shared_get(&format!("{}{provider}.fetch", self.prefix)) {
            Some((bytes, cas)) => (FetchState::decode(&bytes), cas),
            None => (FetchState::default(), 0),
        }
    }
}

/// Retry delay after `failures` consecutive failures: the retry interval,
/// doubling, at most the refresh interval.
fn backoff_secs(remote: &RemoteJwks, failures: u32) -> u64 {
    let doubled = remote.retry_interval_secs.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    doubled.min(remote.refresh_interval_secs.max(remote.retry_interval_secs))
}

/// Imports a fetched key set; keys unchanged since `previous` are kept as
/// they are, not imported again.
fn import(body: &[u8], previous: Option<&VerifierSet>) -> Result<VerifierSet, FetchError> {
    let set = JwkSet::parse_lenient(body).map_err(FetchError::Content)?;
    let (verifiers, _) = VerifierSet::import_lenient(&set, previous);
    if verifiers.is_empty() {
        return Err(FetchError::NoUsableKey);
    }
    Ok(verifiers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderSpec, compile_providers, from_json};
    use crate::test_host::TestHost;
    use crate::test_keys::TestKey;

    const METRICS: JwksMetrics = JwksMetrics {
        fetch_success: crate::host::Counter::__new("jwks.ok"),
        fetch_failure: crate::host::Counter::__new("jwks.failed"),
    };

    fn remote_config() -> Vec<Provider> {
        let specs: Vec<ProviderSpec> = from_json(
            br#"[{"name":"corp","issuer":"https://idp","audiences":["api"],"algorithms":["ES256"],
                 "jwks":{"remote":{"cluster":"idp","path":"/jwks","timeoutMs":1000,"refreshIntervalSeconds":300,
                                   "minRefetchIntervalSeconds":30,"retryIntervalSeconds":5}}}]"#,
        )
        .unwrap();
        compile_providers(specs, "providers").unwrap()
    }

    fn store(providers: &[Provider]) -> KeyStore {
        KeyStore::new(providers, "test.", METRICS)
    }

    #[test]
    fn first_fetch_is_due_and_leased_to_one_worker() {
        let config = remote_config();
        let host = TestHost::new(1000);
        let mut worker_a = store(&config);
        let mut worker_b = store(&config);
        assert!(worker_a.current(0).is_none() && worker_a.needs_attention());
        let request = worker_a.start_fetch(0, &host).unwrap();
        assert_eq!(
            (request.cluster.as_str(), request.path.as_str(), request.authority.as_str()),
            ("idp", "/jwks", "idp")
        );
        assert!(worker_a.start_fetch(0, &host).is_none(), "already in flight");
        assert!(worker_b.start_fetch(0, &host).is_none(), "lease held by worker a");

        let key = TestKey::es256("k1");
        worker_a.finish_fetch(0, &host, Ok(key.jwks().as_bytes()));
        assert!(worker_a.current(0).unwrap().has_kid("k1"));
        assert_eq!(host.counter(METRICS.fetch_success), 1);
        assert!(worker_b.sync(0, &host), "worker b loads what a fetched");
        assert!(worker_b.current(0).unwrap().has_kid("k1"));
        assert!(!worker_b.sync(0, &host), "nothing newer");
        assert!(worker_b.start_fetch(0, &host).is_none(), "not due before the refresh interval");
        host.set_now(1300);
        assert!(worker_b.start_fetch(0, &host).is_some(), "due for refresh");
    }

    #[test]
    fn failed_refresh_keeps_the_last_good_keys_and_backs_off() {
        let config = remote_config();
        let host = TestHost::new(1000);
        let mut keys = store(&config);
        keys.start_fetch(0, &host).unwrap();
        keys.finish_fetch(0, &host, Ok(TestKey::es256("k1").jwks().as_bytes()));
        host.set_now(1300);
        keys.start_fetch(0, &host).unwrap();
        keys.finish_fetch(0, &host, Err(FetchError::Status(503)));
        assert!(keys.current(0).unwrap().has_kid("k1"), "last good set kept");
        assert_eq!(host.counter(METRICS.fetch_failure), 1);
        assert!(keys.backing_off(0, &host, 1304));
        assert!(keys.start_fetch(0, &host).is_none());
        host.set_now(1305);
        keys.start_fetch(0, &host).unwrap();
        keys.finish_fetch(0, &host, Ok(b"<html>oops</html>"));
        assert!(keys.current(0).unwrap().has_kid("k1"));
        host.set_now(1314);
        assert!(keys.start_fetch(0, &host).is_none(), "second failure doubles the delay to 10 s");
        host.set_now(1315);
        keys.start_fetch(0, &host).unwrap();
        keys.finish_fetch(0, &host, Ok(TestKey::es256("k2").jwks().as_bytes()));
        assert!(keys.current(0).unwrap().has_kid("k2"));
        assert!(!keys.backing_off(0, &host, 1315), "success resets the failures");
        let warning = host.logs().into_iter().find(|(level, _)| *level == LogLevel::Warn).unwrap().1;
        assert!(
            warning.contains("HTTP status 503") && warning.contains("keeping the last good key set"),
            "{warning}"
        );
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let config = remote_config();
        let host = TestHost::new(1000);
        let mut keys = store(&config);
        keys.start_fetch(0, &host).unwrap();
        keys.finish_fetch(0, &host, Ok(TestKey::es256("k1").jwks().as_bytes()));
        assert!(!keys.refetch_allowed(0, &host));
        host.set_now(1030);
        assert!(keys.refetch_allowed(0, &host));
        keys.want_fetch(0);
        assert!(keys.start_fetch(0, &host).is_some(), "wanted fetch starts before the refresh interval");
    }

    #[test]
    fn expired_lease_can_be_taken_over() {
        let config = remote_config();
        let host = TestHost::new(1000);
        let mut stuck = store(&config);
        let mut other = store(&config);
        stuck.start_fetch(0, &host).unwrap();
        assert!(other.start_fetch(0, &host).is_none());
        host.set_now(1003);
        assert!(other.start_fetch(0, &host).is_some(), "lease is timeout (1 s) + 2 s");
    }

    #[test]
    fn oversized_and_keyless_documents_are_failures() {
        let config = remote_config();
        let host = TestHost::new(1000);
        let mut keys = store(&config);
        keys.start_fetch(0, &host).unwrap();
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        keys.finish_fetch(0, &host, Ok(&big));
        assert!(keys.current(0).is_none());
        assert_eq!(host.counter(METRICS.fetch_failure), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_refresh_interval() {
        let remote = RemoteJwks {
            cluster: "c".into(),
            path: "/".into(),
            authority: "a".into(),
            timeout_ms: 1000,
            refresh_interval_secs: 60,
            min_refetch_interval_secs: 30,
            retry_interval_secs: 5,
        };
        assert_eq!([1, 2, 3, 4, 5, 40].map(|f| backoff_secs(&remote, f)), [5, 10, 20, 40, 60, 60]);
    }
}
