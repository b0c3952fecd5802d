//! in-task-auth-code as real A2A clients and agents use it: the official
//! A2A SDK (Python `a2a-sdk`, v1.0 and its v0.3 compatibility mode) as the
//! client and as the agent, through a real Envoy running
//! `envoy-configs/in-task-auth-code.yaml` with only its ports changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/bank.rs"]
mod bank;
mod conversation;
mod sdk;
#[path = "../shipped/world.rs"]
mod world;
