//! The integration tests live in this folder's sibling files; this library
//! is empty on purpose (shared helpers are in `common/support.rs`).
