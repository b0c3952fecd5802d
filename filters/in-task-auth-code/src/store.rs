//! What the gateway remembers between requests, in shared data so every
//! worker sees it: pending authorizations (by `state`, single-use, expiring)
//! and, per (user, task), the secondary token obtained for that task.
//!
//! Both live in bounded slot tables keyed by hashes; entries name their
//! user and task and are checked on every read, so a token stored for one
//! user and task is never found for another.

use baton_filter_kit::cache::SharedSlots;
use baton_filter_kit::host::Host;
use baton_token::TokenHash;
use baton_token::secret::Secret;
use serde::{Deserialize, Serialize};

/// A challenge sent and not yet answered: what `state` stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The user the challenge was for.
    pub user: String,
    /// The task.
    pub task_id: String,
    /// The context.
    pub context_id: String,
    /// The PKCE verifier (never leaves the gateway).
    pub verifier: String,
    /// Last second the `state` is accepted.
    pub expires_at: u64,
    /// Whether the state was used (it is single-use).
    pub used: bool,
    /// The browser's sign-in at the users' IdP, once started
    /// (`userBinding.primaryLogin`).
    #[serde(default)]
    pub login: Option<PendingLogin>,
    /// The browser that signed in as `user` (hex SHA-256 of its cookie):
    /// the only one whose redirect from the secondary IdP is accepted.
    #[serde(default)]
    pub browser: Option<String>,
}

/// A sign-in at the users' IdP, started for a pending authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Hex SHA-256 of its `state` (the authorization's state, a dot, and
    /// random characters).
    pub state_hash: String,
    /// Its PKCE verifier.
    pub verifier: String,
    /// The OpenID Connect `nonce` its ID token must carry.
    pub nonce: String,
    /// Hex SHA-256 of the cookie of the browser that started it.
    pub browser: String,
    /// Last second it may complete.
    pub expires_at: u64,
    /// Whether its redirect came (single use).
    pub used: bool,
}

/// Why a `state` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateProblem {
    /// Never issued, or overwritten.
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Already used.
    Reused,
}

impl StateProblem {
    /// Label for audit lines.
    pub fn reason(self) -> &'static str {
        match self {
            StateProblem::Unknown => "state_unknown",
            StateProblem::Expired => "state_expired",
            StateProblem::Reused => "state_reused",
        }
    }
}

/// What the gateway knows of one user's task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The user.
    pub user: String,
    /// The task.
    pub task_id: String,
    /// The gateway made this task id (when answering a new task with a
    /// challenge); the agent does not know it, so it is not forwarded.
    pub gateway_task: bool,
    /// The secondary token for this task, once obtained.
    pub token: Option<String>,
    /// Last second the record (and its token) may be used.
    pub expires_at: u64,
}

impl TaskRecord {
    /// The usable token at `now`.
    pub fn usable_token(&self, now: u64) -> Option<Secret> {
        (now < self.expires_at).then(|| self.token.clone().map(Secret::new)).flatten()
    }
}

/// Pending authorizations and task records.
#[derive(Debug)]
pub struct Store {
    states: SharedSlots,
    tasks: SharedSlots,
}

impl Store {
    /// Tables of `slots` entries each under `prefix`.
    pub fn new(slots: u32, prefix: &str) -> Self {
        Self {
            states: SharedSlots::new(slots, format!("{prefix}state.")),
            tasks: SharedSlots::new(slots, format!("{prefix}task.")),
        }
    }

    /// Remembers a challenge under `state`.
    pub fn put_state(&self, host: &dyn Host, state: &str, pending: &PendingAuthorization) {
        if let Ok(entry) = serde_json::to_vec(pending) {
            self.states.put(&TokenHash::of(state.as_bytes()), &entry, host);
        }
    }

    /// Takes `state` for use: it must exist, be unexpired and unused; it is
    /// marked used atomically, so of two concurrent uses only one succeeds.
    pub fn consume_state(&self, host: &dyn Host, state: &str) -> Result<PendingAuthorization, StateProblem> {
        self.modify_state(host, state, |pending| {
            pending.used = true;
            Ok(())
        })
        .map(|(pending, ())| pending)
    }

    /// Changes the pending authorization of `state` (unused and unexpired)
    /// with `change`, atomically: on a concurrent change it is read again
    /// and `change` runs again, a few times at most.
    pub fn modify_state<T>(
        &self,
        host: &dyn Host,
        state: &str,
        mut change: impl FnMut(&mut PendingAuthorization) -> Result<T, StateProblem>,
    ) -> Result<(PendingAuthorization, T), StateProblem> {
        let key = TokenHash::of(state.as_bytes());
        for _ in 0..4 {
            let (entry, cas) = self.states.get_versioned(&key, host).ok_or(StateProblem::Unknown)?;
            let mut pending: PendingAuthorization =
                serde_json::from_slice(&entry).map_err(|_| StateProblem::Unknown)?;
            if pending.used {
                return Err(StateProblem::Reused);
            }
            if host.now_unix_secs() >= pending.expires_at {
                return Err(StateProblem::Expired);
            }
            let outcome = change(&mut pending)?;
            let changed = serde_json::to_vec(&pending).map_err(|_| StateProblem::Unknown)?;
            if self.states.put_if_unchanged(&key, &changed, cas, host) {
                return Ok((pending, outcome));
            }
        }
        Err(StateProblem::Reused)
    }

    /// Reads a state without using it (the continuation of a use).
    pub fn peek_state(&self, host: &dyn Host, state: &str) -> Option<PendingAuthorization> {
        let entry = self.states.get(&TokenHash::of(state.as_bytes()), host)?;
        serde_json::from_slice(&entry).ok()
    }

    fn task_key(user: &str, task_id: &str) -> TokenHash {
        TokenHash::of_parts(&[b"task", user.as_bytes(), task_id.as_bytes()])
    }

    /// The record of `user`'s task, if still valid.
    pub fn task(&self, host: &dyn Host, user: &str, task_id: &str) -> Option<TaskRecord> {
        let entry = self.tasks.get(&Self::task_key(user, task_id), host)?;
        let record: TaskRecord = serde_json::from_slice(&entry).ok()?;
        (record.user == user && record.task_id == task_id && host.now_unix_secs() < record.expires_at)
            .then_some(record)
    }

    /// Stores a task record.
    pub fn put_task(&self, host: &dyn Host, record: &TaskRecord) {
        if let Ok(entry) = serde_json::to_vec(record) {
            self.tasks.put(&Self::task_key(&record.user, &record.task_id), &entry, host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_filter_kit::test_host::TestHost;

    const NOW: u64 = 1_800_000_000;

    fn pending(user: &str) -> PendingAuthorization {
        PendingAuthorization {
            user: user.into(),
            task_id: "t1".into(),
            context_id: "c1".into(),
            verifier: "v".repeat(43),
            expires_at: NOW + 300,
            used: false,
            login: None,
            browser: None,
        }
    }

    #[test]
    fn a_state_is_used_once() {
        let host = TestHost::new(NOW);
        let store = Store::new(16, "t.");
        store.put_state(&host, "state-1", &pending("alice"));
        assert_eq!(store.consume_state(&host, "state-1").unwrap().user, "alice");
        assert_eq!(store.consume_state(&host, "state-1"), Err(StateProblem::Reused));
        assert!(store.peek_state(&host, "state-1").unwrap().used);
        assert_eq!(store.consume_state(&host, "never-issued"), Err(StateProblem::Unknown));
    }

    #[test]
    fn a_state_expires() {
        let host = TestHost::new(NOW);
        let store = Store::new(16, "t.");
        store.put_state(&host, "state-2", &pending("alice"));
        host.set_now(NOW + 300);
        assert_eq!(store.consume_state(&host, "state-2"), Err(StateProblem::Expired));
    }

    #[test]
    fn a_worker_racing_for_the_same_state_loses() {
        let host = TestHost::new(NOW);
        let worker_a = Store::new(16, "t.");
        let worker_b = Store::new(16, "t.");
        worker_a.put_state(&host, "s", &pending("alice"));
        let key = TokenHash::of(b"s");
        let (_, stale_cas) = worker_b.states.get_versioned(&key, &host).unwrap();
        assert!(worker_a.consume_state(&host, "s").is_ok());
        assert!(!worker_b.states.put_if_unchanged(&key, b"{}", stale_cas, &host));
    }

    #[test]
    fn task_records_belong_to_one_user_and_task() {
        let host = TestHost::new(NOW);
        let store = Store::new(16, "t.");
        let record = TaskRecord {
            user: "alice".into(),
            task_id: "t1".into(),
            gateway_task: false,
            token: Some("bank-token".into()),
            expires_at: NOW + 60,
        };
        store.put_task(&host, &record);
        assert_eq!(
            store.task(&host, "alice", "t1").unwrap().usable_token(NOW).unwrap().expose(),
            "bank-token"
        );
        assert!(store.task(&host, "bob", "t1").is_none());
        assert!(store.task(&host, "alice", "t2").is_none());
        host.set_now(NOW + 60);
        assert!(store.task(&host, "alice", "t1").is_none());
    }
}
