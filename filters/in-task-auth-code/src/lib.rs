//! Baton in-task-auth-code: A2A in-task authorization with a second IdP.
//! When a step of an A2A task needs a credential from another authorization
//! server (the user's bank), the filter answers with an auth-required task
//! and a ready-to-open authorization URL (PKCE and `state` made by the
//! gateway), exchanges the returned code inside Envoy, validates the token,
//! keeps it for the user's task, strips credentials from message bodies and
//! injects the token for the agent.
//!
//! Layout: `config` -> `model`; `a2a` reads and writes A2A JSON-RPC (v0.3
//! and v1.0); `decision` decides per message, `callback` serves the OAuth
//! redirect, `response` completes agents' own challenges; `challenge` makes
//! state and PKCE; `store` keeps them (or, with a shared store,
//! `sealed_state` carries them in the `state` itself); `filter` fits the engine into the
//! filter-kit runtime, which holds requests and talks to the proxy.

pub mod a2a;
pub mod browser;
pub mod callback;
pub mod card;
pub mod challenge;
pub mod config;
pub mod decision;
pub mod denial;
pub mod filter;
pub mod gateway_task;
pub mod login;
pub mod metrics;
pub mod model;
pub mod oauth_server;
pub mod response;
pub mod sealed_login;
pub mod sealed_state;
pub mod sealed_task;
pub mod store;
pub mod strict_json;

/// The name this filter logs under.
pub const FILTER: &str = "in-task-auth-code";

#[cfg(feature = "module")]
baton_filter_kit::register_filter!(crate::filter::InTaskAuthCode);
