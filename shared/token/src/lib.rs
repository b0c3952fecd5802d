//! Token logic shared by the Baton filters.
//!
//! Everything here is pure: no host calls, no system clock, no I/O. Time comes
//! in through [`Clock`], keys come in as parsed JWKS, and every decision is a
//! value the caller turns into an HTTP answer. The crate is `no_std` + `alloc`;
//! signature verification (feature `verify`) is the one part that needs `std`.
//!
//! The path of a bearer token through the library:
//!
//! 1. [`jwt::UnverifiedJwt::parse`]: strict compact-JWS parsing (RFC 7515,
//!    RFC 8725): three segments, canonical base64url, JSON objects without
//!    duplicate members, a known asymmetric algorithm, no unknown `crit`.
//! 2. [`verify::VerifyingKey::verify`] (feature `verify`) checks the signature
//!    with a key from a [`jwk::JwkSet`] whose type matches the algorithm.
//! 3. [`validation::ValidationPolicy::validate`] checks `iss`, `aud`, `exp`,
//!    `nbf`, `iat` and `typ` against the clock.
//! 4. [`rules::AccessRequirement::evaluate`] applies scope, claim and step-up
//!    rules and says which challenge to send when they fail
//!    ([`challenge::AuthChallenge`]).
#![no_std]
// The core must stay usable without std: import from core/alloc only.
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod base64url;
pub mod challenge;
pub mod claims;
pub mod clock;
pub mod form;
pub mod hash;
pub mod header;
pub mod issued;
pub mod json;
pub mod jwk;
pub mod jwt;
pub mod oauth;
pub mod pkce;
pub mod rules;
pub mod secret;
#[cfg(feature = "verify")]
pub mod sign;
pub mod validation;
#[cfg(feature = "verify")]
pub mod verify;

pub use challenge::{AuthChallenge, BearerError};
pub use claims::{Actor, Audience, Claims};
pub use clock::{Clock, FixedClock};
pub use hash::TokenHash;
pub use header::{Algorithm, JoseHeader};
pub use jwk::{Jwk, JwkSet, KeyMaterial};
pub use jwt::{JwtError, UnverifiedJwt};
pub use rules::{AccessDecision, AccessRequirement, ClaimCondition, ClaimTest, ScopeRequirement};
pub use secret::Secret;
pub use validation::{ValidationError, ValidationPolicy};
