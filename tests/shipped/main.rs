//! The attack catalog against the shipped configurations: each file of
//! `envoy-configs/` runs in a real Envoy with only its ports changed (as a
//! user who copies it would run it) and is attacked the way the outside
//! review of 2026-12 did, with the sibling cases found since. One module
//! per class of finding; every row names what it covers and checks that no
//! credential reached anyone it does not belong to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audience;
#[path = "../common/bank.rs"]
mod bank;
mod consent;
mod delegation;
mod fleet;
mod fleet_world;
#[path = "../common/h2.rs"]
mod h2;
mod headers;
mod identity;
mod idp_refusals;
mod issuer;
mod methods;
mod one_pass;
mod paths;
mod rules;
mod secrets;
mod store;
mod trailers;
mod world;
