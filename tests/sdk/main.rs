//! The filters as real clients and servers use them, through a real Envoy
//! running the shipped configs with only their ports changed: the official
//! A2A SDK (Python `a2a-sdk`, v1.0 and its v0.3 compatibility mode) as
//! client and agent through `in-task-auth-code.yaml`, and the official MCP
//! SDK (`mcp`) through `mcp-resource.yaml`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/bank.rs"]
mod bank;
mod conversation;
mod fleet_conversation;
#[path = "../shipped/fleet_world.rs"]
mod fleet_world;
mod mcp;
mod sdk;
#[path = "../shipped/world.rs"]
mod world;
