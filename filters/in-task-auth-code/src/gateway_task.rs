//! The ids of the tasks the gateway names itself (in a challenge to a
//! message that named no task), and how a replica recognizes one.
//!
//! A gateway task is the gateway's until the user is authorized: its id is
//! never sent to the agent (which did not make it), and the agent's first
//! answer replaces it. Without a store, a random id whose record this Envoy
//! keeps says so. With a shared store the message, the bank's redirect and
//! the next message may each land on another replica, and only the one
//! that challenged holds that record; so the id says it itself: a random
//! part, then a keyed hash of the user and that part under the store's
//! naming key (`{random}.{32 hex digits}`). Every replica with the fleet's
//! keys recognizes the gateway's task of that user without a store read;
//! a client cannot make one (nor use another user's: the user is hashed).

use baton_filter_kit::host::Host;
use baton_filter_kit::store::StoreConfig;

use crate::challenge::random_id;

/// What the keyed hash is of (kept apart from every other name).
const KIND: &str = "in-task gateway task";
/// Hex digits of the keyed hash in the id (128 bits).
const TAG_DIGITS: usize = 32;

/// A new id for a task the gateway names for `user`; `None` without
/// randomness.
pub fn new_id(store: Option<&StoreConfig>, host: &dyn Host, user: &str) -> Option<String> {
    let random = random_id(host)?;
    let Some(store) = store else {
        return Some(random);
    };
    let tag = store.keys.name(KIND, &[user.as_bytes(), random.as_bytes()]);
    Some(format!("{random}.{}", tag.get(..TAG_DIGITS)?))
}

/// Whether `task_id` is an id the fleet made for `user`'s task (always
/// false without a store: then the Envoy's own record says so).
pub fn recognizes(store: Option<&StoreConfig>, user: &str, task_id: &str) -> bool {
    let Some(store) = store else {
        return false;
    };
    let Some((random, tag)) = task_id.split_once('.') else {
        return false;
    };
    tag.len() == TAG_DIGITS && store.keys.names(KIND, &[user.as_bytes(), random.as_bytes()], tag)
}

#[cfg(test)]
mod tests {
    use baton_filter_kit::test_host::TestHost;
    use serde_json::json;

    use super::*;
    use crate::model::FilterConfig;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn config(keys: serde_json::Value, current: &str) -> FilterConfig {
        let mut config = crate::config::tests::base();
        config["store"] = json!({"etcd": {"cluster": "etcd"}, "sealingKeys": keys, "currentKey": current});
        crate::config::parse(config.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn every_replica_with_the_fleets_keys_recognizes_the_users_gateway_task() {
        let host = TestHost::new(1_800_000_000);
        let one = config(json!([{"id": "k1", "secret": K1}]), "k1");
        let store = one.shared_store.as_ref();
        let id = new_id(store, &host, "alice").unwrap();
        assert_eq!(id.len(), 22 + 1 + TAG_DIGITS);
        assert!(!id.contains("alice"));
        // Another replica: the same configuration.
        let replica = config(json!([{"id": "k1", "secret": K1}]), "k1");
        assert!(recognizes(replica.shared_store.as_ref(), "alice", &id));
        // Not bob's; not an id a client made up or changed; not another
        // fleet's; not without a store.
        assert!(!recognizes(store, "bob", &id));
        let (random, tag) = id.split_once('.').unwrap();
        assert!(!recognizes(store, "alice", &format!("{random}x.{tag}")));
        assert!(!recognizes(store, "alice", &format!("{random}.{}", "0".repeat(TAG_DIGITS))));
        assert!(!recognizes(store, "alice", random));
        assert!(!recognizes(store, "alice", "agent-task-7"));
        let other = config(json!([{"id": "k1", "secret": K2}]), "k1");
        assert!(!recognizes(other.shared_store.as_ref(), "alice", &id));
        assert!(!recognizes(None, "alice", &id));
        // After a rotation to k2 (k1 still configured): still recognized.
        let rotated = config(json!([{"id": "k1", "secret": K1}, {"id": "k2", "secret": K2}]), "k2");
        assert!(recognizes(rotated.shared_store.as_ref(), "alice", &id));
        // Without a store: a plain random id.
        assert_eq!(new_id(None, &host, "alice").unwrap().len(), 22);
    }
}
