//! The shared store (issue 16): state several Envoy replicas agree on, kept
//! in etcd v3 and reached through its JSON gateway with Envoy HTTP callouts.
//!
//! - [`etcd`]: the gateway protocol, pure: request bodies and strict
//!   readers of the answers;
//! - [`seal`]: values sealed (ChaCha20-Poly1305, key id in the clear, bound
//!   to their store key) and store keys named by keyed hashes;
//! - [`config`]: the `store` section filters embed;
//! - [`callout`]: an operation as a [`crate::host::Callout`], and the
//!   answer read back from the [`crate::host::Host`].
//!
//! A request waits for an operation like for a token call
//! ([`crate::runtime::Verdict::AwaitStore`]); in-task-auth-code uses it for
//! the single use of its sealed `state`.

pub mod callout;
pub mod config;
pub mod etcd;
pub mod seal;

pub use callout::{
    EtcdEndpoint, MAX_ANSWER_BYTES, StoreCall, fault_label, interpret, log_fault, read_answer,
};
pub use config::{StoreConfig, StoreSpec, compile_store};
pub use etcd::{EtcdAnswer, EtcdError, EtcdOperation, Lease, LeaseId, StoredValue};
pub use seal::{SealError, StoreKeys, key_id_of};
