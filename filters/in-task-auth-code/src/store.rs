//! What the gateway remembers between requests, in shared data so every
//! worker sees it: pending authorizations (by `state`, single-use, expiring),
//! the tasks the gateway named itself, per (user, task) the secondary token
//! obtained for that task, and the tasks that need the credential (gated:
//! every later message of a task the gateway challenged needs it, whoever
//! sends it and whatever it says, until the agent ends the task).
//!
//! Each kind lives in its own bounded table keyed by hashes
//! ([`SlotTable`]): a live entry is never pushed out by another key, and a
//! full table refuses a new entry instead (the caller answers 503). Each
//! user may hold at most a configured number of pending authorizations and
//! of stored tokens; beyond that the user's own oldest goes. So no user, nor
//! any number of users, can push out another's authorization or token.
//! Entries name their user and task and are checked on every read, so a
//! token stored for one user and task is never found for another.

use baton_filter_kit::host::Host;
use baton_filter_kit::slot_table::SlotTable;
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
    pub verifier: Secret,
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
    pub verifier: Secret,
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
    pub token: Option<Secret>,
    /// Last second the record (and its token) may be used.
    pub expires_at: u64,
    /// The task's context (a task the gateway named: for `GetTask`).
    #[serde(default)]
    pub context_id: String,
    /// The challenge the gateway answered with (a task the gateway named:
    /// for `GetTask`, and `CancelTask` ends its authorization).
    #[serde(default)]
    pub challenge: Option<serde_json::Value>,
}

impl TaskRecord {
    /// The usable token at `now`.
    pub fn usable_token(&self, now: u64) -> Option<Secret> {
        (now < self.expires_at).then(|| self.token.clone()).flatten()
    }
}

/// How long a pending authorization stays readable after its lifetime.
const STATE_GRACE_SECS: u64 = 300;

/// How much the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Pending authorizations (and gateway-named tasks) in all.
    pub pending: u32,
    /// Stored tokens in all.
    pub tokens: u32,
    /// Pending authorizations one user may hold.
    pub pending_per_user: usize,
    /// Stored tokens one user may hold.
    pub tokens_per_user: usize,
}

/// The store is full: nothing was pushed out, nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFull;

/// Which of a user's holdings an index entry counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    Pending,
    Token,
    Gate,
}

/// One user's holdings: hex keys and expiry, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct UserIndex {
    #[serde(default)]
    pending: Vec<(String, u64)>,
    #[serde(default)]
    tokens: Vec<(String, u64)>,
    #[serde(default)]
    gates: Vec<(String, u64)>,
}

/// Pending authorizations, gateway-named tasks and stored tokens.
#[derive(Debug)]
pub struct Store {
    pending: SlotTable,
    tokens: SlotTable,
    users: SlotTable,
    limits: StoreLimits,
}

impl Store {
    /// Tables of the given sizes under `prefix`.
    pub fn new(limits: StoreLimits, prefix: &str) -> Self {
        Self {
            pending: SlotTable::new(limits.pending, format!("{prefix}pending.")),
            tokens: SlotTable::new(limits.tokens, format!("{prefix}tokens.")),
            users: SlotTable::new(limits.pending.saturating_add(limits.tokens), format!("{prefix}users.")),
            limits,
        }
    }

    /// Creates the tables' slots (every VM, before its first request).
    pub fn init(&self, host: &dyn Host) {
        self.pending.init(host);
        self.tokens.init(host);
        self.users.init(host);
    }

    fn state_key(state: &str) -> TokenHash {
        TokenHash::of_parts(&[b"state", state.as_bytes()])
    }

    fn task_key(user: &str, task_id: &str) -> TokenHash {
        TokenHash::of_parts(&[b"task", user.as_bytes(), task_id.as_bytes()])
    }

    fn marker_key(user: &str, task_id: &str) -> TokenHash {
        TokenHash::of_parts(&[b"gateway-task", user.as_bytes(), task_id.as_bytes()])
    }

    fn gate_key(task_id: &str) -> TokenHash {
        TokenHash::of_parts(&[b"gate", task_id.as_bytes()])
    }

    /// Marks `task_id` as needing the credential in every later message,
    /// until `until` (counted among `user`'s gates: their oldest goes
    /// beyond their limit). Marking it again moves `until` on.
    pub fn gate_task(&self, host: &dyn Host, user: &str, task_id: &str, until: u64) -> Result<(), StoreFull> {
        let key = Self::gate_key(task_id);
        let now = host.now_unix_secs();
        if let Some(entry) = self.tokens.get(host, &key, now)
            && entry.payload == task_id.as_bytes()
            && entry.expires_at >= until
        {
            return Ok(());
        }
        self.hold(host, user, Holding::Gate, &key, until)?;
        self.tokens.insert(host, &key, task_id.as_bytes(), until, now).map_err(|_| StoreFull)
    }

    /// Whether every message of `task_id` needs the credential.
    pub fn task_gated(&self, host: &dyn Host, task_id: &str) -> bool {
        self.tokens
            .get(host, &Self::gate_key(task_id), host.now_unix_secs())
            .is_some_and(|entry| entry.payload == task_id.as_bytes())
    }

    /// The agent ended `task_id` (or the user canceled the task the
    /// gateway named): it needs nothing more, and `user`'s token and
    /// record for it go.
    pub fn end_task(&self, host: &dyn Host, user: Option<&str>, task_id: &str) {
        let now = host.now_unix_secs();
        self.tokens.release(host, &Self::gate_key(task_id), now);
        if let Some(user) = user {
            self.tokens.release(host, &Self::task_key(user, task_id), now);
            self.pending.release(host, &Self::marker_key(user, task_id), now);
        }
    }

    /// Remembers a challenge under `state`, for `pending.user` (whose
    /// oldest pending authorization goes beyond their limit). It stays a
    /// while past its lifetime, so that a late redirect is told "expired"
    /// or "used" rather than "unknown".
    pub fn put_state(
        &self,
        host: &dyn Host,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreFull> {
        let entry = serde_json::to_vec(pending).map_err(|_| StoreFull)?;
        let key = Self::state_key(state);
        let until = pending.expires_at.saturating_add(STATE_GRACE_SECS);
        self.hold(host, &pending.user, Holding::Pending, &key, until)?;
        self.pending.insert(host, &key, &entry, until, host.now_unix_secs()).map_err(|_| StoreFull)
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
        let key = Self::state_key(state);
        for _ in 0..4 {
            let now = host.now_unix_secs();
            let Some(entry) = self.pending.get(host, &key, now) else {
                return Err(StateProblem::Unknown);
            };
            let mut pending: PendingAuthorization =
                serde_json::from_slice(&entry.payload).map_err(|_| StateProblem::Unknown)?;
            if pending.used {
                return Err(StateProblem::Reused);
            }
            if now >= pending.expires_at {
                return Err(StateProblem::Expired);
            }
            let outcome = change(&mut pending)?;
            let changed = serde_json::to_vec(&pending).map_err(|_| StateProblem::Unknown)?;
            if self.pending.replace(host, entry.slot, &key, &changed, entry.expires_at) {
                return Ok((pending, outcome));
            }
        }
        Err(StateProblem::Reused)
    }

    /// Reads a state without using it (the continuation of a use).
    pub fn peek_state(&self, host: &dyn Host, state: &str) -> Option<PendingAuthorization> {
        let entry = self.pending.get(host, &Self::state_key(state), host.now_unix_secs())?;
        serde_json::from_slice(&entry.payload).ok()
    }

    /// The record of `user`'s task, if still valid: its stored token, or
    /// that the gateway named the task.
    pub fn task(&self, host: &dyn Host, user: &str, task_id: &str) -> Option<TaskRecord> {
        let now = host.now_unix_secs();
        let entry = self
            .tokens
            .get(host, &Self::task_key(user, task_id), now)
            .or_else(|| self.pending.get(host, &Self::marker_key(user, task_id), now))?;
        let record: TaskRecord = serde_json::from_slice(&entry.payload).ok()?;
        (record.user == user && record.task_id == task_id && now < record.expires_at).then_some(record)
    }

    /// Stores a task record: a token (counted among the user's tokens), or
    /// the mark of a task the gateway named (among their pending ones).
    pub fn put_task(&self, host: &dyn Host, record: &TaskRecord) -> Result<(), StoreFull> {
        let entry = serde_json::to_vec(record).map_err(|_| StoreFull)?;
        let now = host.now_unix_secs();
        let (table, key, holding) = match &record.token {
            Some(_) => (&self.tokens, Self::task_key(&record.user, &record.task_id), Holding::Token),
            None => (&self.pending, Self::marker_key(&record.user, &record.task_id), Holding::Pending),
        };
        self.hold(host, &record.user, holding, &key, record.expires_at)?;
        table.insert(host, &key, &entry, record.expires_at, now).map_err(|_| StoreFull)
    }

    /// Counts `key` among `user`'s holdings; what goes beyond the user's
    /// limit (their oldest) is released.
    fn hold(
        &self,
        host: &dyn Host,
        user: &str,
        holding: Holding,
        key: &TokenHash,
        expires_at: u64,
    ) -> Result<(), StoreFull> {
        let user_key = TokenHash::of_parts(&[b"user", user.as_bytes()]);
        let hex = key.to_hex();
        for _ in 0..4 {
            let now = host.now_unix_secs();
            let current = self.users.get(host, &user_key, now);
            let mut index: UserIndex = current
                .as_ref()
                .and_then(|entry| serde_json::from_slice(&entry.payload).ok())
                .unwrap_or_default();
            let (list, limit) = match holding {
                Holding::Pending => (&mut index.pending, self.limits.pending_per_user),
                Holding::Token => (&mut index.tokens, self.limits.tokens_per_user),
                Holding::Gate => (&mut index.gates, self.limits.tokens_per_user),
            };
            list.retain(|(held, until)| now < *until && *held != hex);
            list.push((hex.clone(), expires_at));
            let evicted: Vec<String> =
                list.drain(..list.len().saturating_sub(limit.max(1))).map(|(held, _)| held).collect();
            let until = index
                .pending
                .iter()
                .chain(&index.tokens)
                .chain(&index.gates)
                .map(|(_, until)| *until)
                .max()
                .unwrap_or(expires_at);
            let payload = serde_json::to_vec(&index).map_err(|_| StoreFull)?;
            let written = match &current {
                Some(entry) => self.users.replace(host, entry.slot, &user_key, &payload, until),
                None => self.users.insert(host, &user_key, &payload, until, now).is_ok(),
            };
            if written {
                let table = match holding {
                    Holding::Pending => &self.pending,
                    Holding::Token | Holding::Gate => &self.tokens,
                };
                for held in evicted {
                    if let Some(evicted) = TokenHash::from_hex(&held) {
                        table.release(host, &evicted, now);
                    }
                }
                return Ok(());
            }
            if current.is_none() && self.users.get(host, &user_key, now).is_none() {
                return Err(StoreFull);
            }
        }
        Err(StoreFull)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_filter_kit::test_host::TestHost;

    const NOW: u64 = 1_800_000_000;

    const LIMITS: StoreLimits =
        StoreLimits { pending: 64, tokens: 64, pending_per_user: 4, tokens_per_user: 4 };

    fn store(host: &TestHost, limits: StoreLimits) -> Store {
        let store = Store::new(limits, "t.");
        store.init(host);
        store
    }

    fn pending(user: &str) -> PendingAuthorization {
        PendingAuthorization {
            user: user.into(),
            task_id: "t1".into(),
            context_id: "c1".into(),
            verifier: Secret::new("v".repeat(43)),
            expires_at: NOW + 300,
            used: false,
            login: None,
            browser: None,
        }
    }

    fn token(user: &str, task: &str) -> TaskRecord {
        TaskRecord {
            user: user.into(),
            task_id: task.into(),
            gateway_task: false,
            token: Some(Secret::new(format!("bank-token-{user}-{task}"))),
            expires_at: NOW + 600,
            context_id: String::new(),
            challenge: None,
        }
    }

    #[test]
    fn a_state_is_used_once() {
        let host = TestHost::new(NOW);
        let store = store(&host, LIMITS);
        store.put_state(&host, "state-1", &pending("alice")).unwrap();
        assert_eq!(store.consume_state(&host, "state-1").unwrap().user, "alice");
        assert_eq!(store.consume_state(&host, "state-1"), Err(StateProblem::Reused));
        assert!(store.peek_state(&host, "state-1").unwrap().used);
        assert_eq!(store.consume_state(&host, "never-issued"), Err(StateProblem::Unknown));
    }

    #[test]
    fn a_state_expires() {
        let host = TestHost::new(NOW);
        let store = store(&host, LIMITS);
        store.put_state(&host, "state-2", &pending("alice")).unwrap();
        host.set_now(NOW + 300);
        assert_eq!(store.consume_state(&host, "state-2"), Err(StateProblem::Expired));
        host.set_now(NOW + 300 + STATE_GRACE_SECS);
        assert_eq!(store.consume_state(&host, "state-2"), Err(StateProblem::Unknown));
    }

    #[test]
    fn a_worker_racing_for_the_same_state_loses() {
        let host = TestHost::new(NOW);
        let worker_a = store(&host, LIMITS);
        let worker_b = Store::new(LIMITS, "t.");
        worker_a.put_state(&host, "s", &pending("alice")).unwrap();
        // Both read the state; one marks it used first, the other's write
        // (from the same read) fails and it finds the state used.
        let mut first = true;
        let raced = worker_b.modify_state(&host, "s", |pending| {
            if std::mem::take(&mut first) {
                worker_a.consume_state(&host, "s").map(|_| ())?;
            }
            pending.used = true;
            Ok(())
        });
        assert_eq!(raced, Err(StateProblem::Reused));
    }

    #[test]
    fn task_records_belong_to_one_user_and_task() {
        let host = TestHost::new(NOW);
        let store = store(&host, LIMITS);
        store.put_task(&host, &token("alice", "t1")).unwrap();
        assert_eq!(
            store.task(&host, "alice", "t1").unwrap().usable_token(NOW).unwrap().expose(),
            "bank-token-alice-t1"
        );
        assert!(store.task(&host, "bob", "t1").is_none());
        assert!(store.task(&host, "alice", "t2").is_none());
        // A task the gateway named is remembered apart from tokens.
        let marker = TaskRecord { gateway_task: true, token: None, ..token("alice", "gw-1") };
        store.put_task(&host, &marker).unwrap();
        assert!(store.task(&host, "alice", "gw-1").unwrap().gateway_task);
        host.set_now(NOW + 600);
        assert!(store.task(&host, "alice", "t1").is_none());
    }

    #[test]
    fn no_one_pushes_out_another_users_authorizations_or_tokens() {
        // The review's flood: many challenges from other identities while
        // alice's authorizations and tokens are held.
        let host = TestHost::new(NOW);
        let limits = StoreLimits { pending: 256, tokens: 256, pending_per_user: 8, tokens_per_user: 8 };
        let store = store(&host, limits);
        for n in 0..8 {
            store.put_state(&host, &format!("alice-{n}"), &pending("alice")).unwrap();
            store.put_task(&host, &token("alice", &format!("t{n}"))).unwrap();
        }
        let mut refused = 0;
        for n in 0..3000 {
            let user = format!("throwaway-{}", n % 500);
            if store.put_state(&host, &format!("flood-{n}"), &pending(&user)).is_err() {
                refused += 1;
            }
            if store.put_task(&host, &token(&user, &format!("f{n}"))).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0, "the tables filled up");
        for n in 0..8 {
            assert!(
                store.peek_state(&host, &format!("alice-{n}")).is_some(),
                "alice's state {n} was pushed out"
            );
            assert!(
                store.task(&host, "alice", &format!("t{n}")).is_some(),
                "alice's token {n} was pushed out"
            );
        }
        // One user alone holds at most their limit: their own oldest goes.
        let mallory_first = "mallory-0";
        for n in 0..100 {
            let _ = store.put_state(&host, &format!("mallory-{n}"), &pending("mallory"));
        }
        assert!(store.peek_state(&host, mallory_first).is_none());
        let held = (0..100).filter(|n| store.peek_state(&host, &format!("mallory-{n}")).is_some()).count();
        assert!(held <= 8, "mallory holds {held}");
        // Expired entries free their slots for anyone.
        host.set_now(NOW + 600 + STATE_GRACE_SECS);
        store.put_state(&host, "later", &pending("carol")).unwrap();
    }

    #[test]
    fn a_gated_task_needs_the_credential_until_it_ends() {
        let host = TestHost::new(NOW);
        let store = store(&host, LIMITS);
        assert!(!store.task_gated(&host, "t1"));
        store.gate_task(&host, "alice", "t1", NOW + 100).unwrap();
        store.put_task(&host, &token("alice", "t1")).unwrap();
        // For every user: the gate is the task's, not alice's.
        assert!(store.task_gated(&host, "t1"));
        assert!(!store.task_gated(&host, "t2"));
        // Gating again moves its end on.
        store.gate_task(&host, "alice", "t1", NOW + 200).unwrap();
        host.set_now(NOW + 150);
        assert!(store.task_gated(&host, "t1"));
        // Ended: no gate, and alice's token for it is gone.
        store.end_task(&host, Some("alice"), "t1");
        assert!(!store.task_gated(&host, "t1"));
        assert!(store.task(&host, "alice", "t1").is_none());
        // Expired gates lapse.
        store.gate_task(&host, "bob", "t3", NOW + 160).unwrap();
        host.set_now(NOW + 160);
        assert!(!store.task_gated(&host, "t3"));
    }

    #[test]
    fn one_users_gates_push_out_only_their_own_oldest() {
        let host = TestHost::new(NOW);
        let store = store(&host, LIMITS);
        store.put_state(&host, "alice-state", &pending("alice")).unwrap();
        for n in 0..10 {
            store.gate_task(&host, "alice", &format!("g{n}"), NOW + 100).unwrap();
        }
        // tokens_per_user is 4: the 4 newest gates stand, her state too.
        let gated = (0..10).filter(|n| store.task_gated(&host, &format!("g{n}"))).count();
        assert_eq!(gated, 4);
        assert!(store.task_gated(&host, "g9"));
        assert!(store.peek_state(&host, "alice-state").is_some());
    }
}
