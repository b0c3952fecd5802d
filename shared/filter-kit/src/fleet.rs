//! One token endpoint call per distinct token across a fleet of Envoys that
//! share a store (issue 16): the fleet-wide step of single flight, after the
//! worker's ([`crate::token_calls::Flights`]) and the VM's
//! ([`crate::lease`]).
//!
//! The worker about to make a call first claims it in the store: a lease as
//! long as the call may take, then the token's own store key created with
//! [`PENDING`] under that lease (create-if-absent: etcd lets one replica
//! of all create it). The replica that created it makes the call and then
//! writes the token over the marker (or deletes the marker when it has no
//! token to share). The others follow: they read the key every
//! [`FOLLOW_POLL`] until the token is there, or the key is gone (the call
//! failed, or the claim ran out with its lease) and they claim again.
//!
//! The store only saves calls; the IdP stays the authority. Any fault of
//! the store, a value that is not what a flight leaves, a claim followed
//! longer than it can live, or a third claim makes the replica call the IdP
//! itself: a fault costs an extra IdP call, never a request.
//!
//! Pure bookkeeping over typed store answers; the runtime dispatches the
//! operations (from the root context, on its tick) and the calls.

use std::time::Duration;

use baton_token::TokenHash;

use crate::store::{EtcdAnswer, EtcdError, EtcdOperation, LeaseId, StoredValue};
use crate::token_calls::TokenCall;

/// What a claim leaves under the token's key until the token replaces it.
/// Not sealed: it says only that a call is out, which the key's existence
/// says already.
pub const PENDING: &[u8] = b"baton flight pending v1";
/// How often a follower reads the key.
pub const FOLLOW_POLL: Duration = Duration::from_millis(25);
/// Claims one flight makes at most before its replica calls regardless.
const MAX_CLAIMS: u8 = 2;

/// A filter's answer to "is this call made once for the fleet?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFlight {
    /// The store key the token is written under (the claim's key too).
    pub key: Vec<u8>,
    /// How long a claim holds (s): as long as the call may take, and at
    /// least etcd's minimum TTL.
    pub claim_ttl_secs: u32,
}

/// What a value found under a flight's key is, as the filter reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<O> {
    /// The token another replica obtained (the filter cached it), as the
    /// outcome its waiting requests get.
    Token(O),
    /// Something the filter does not use (another sealing key, expired,
    /// tampered with).
    Unusable,
}

/// Where a flight ended, or what the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<O> {
    /// Nothing yet: an operation is out, or the next read is due later.
    Wait,
    /// This replica makes the call, for this reason.
    Call(TokenCall, CallHere),
    /// Another replica's token arrived: the call is not made.
    Done(TokenCall, O),
}

/// Why a replica makes a call it took to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallHere {
    /// It claimed the call: the fleet's one.
    Claimed,
    /// The store failed (the fault's label): the IdP is asked regardless.
    StoreFault(&'static str),
    /// What the key held was not usable, a claim outlived its lease, or
    /// the claims ran out.
    NoUsableClaim,
}

/// Where a flight stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// A lease for the claim is to be asked for.
    WantLease,
    /// The claim (create-if-absent) is to be sent with this lease.
    WantClaim(LeaseId),
    /// Another replica holds the claim: read the key at this time (ms).
    Follow(u64),
    /// An operation is out.
    Out,
}

#[derive(Debug)]
struct Flight {
    call: TokenCall,
    store_key: Vec<u8>,
    claim_ttl_secs: u32,
    stage: Stage,
    claims: u8,
    /// When it started following a claim (ms); `None` while not.
    following_since: Option<u64>,
}

/// The fleet flights of one worker, by call key.
#[derive(Debug, Default)]
pub struct FleetFlights {
    flights: Vec<Flight>,
}

impl FleetFlights {
    /// Starts the fleet step of `call`.
    pub fn start(&mut self, call: TokenCall, flight: FleetFlight) {
        if self.flights.iter().any(|f| f.call.key == call.key) {
            return;
        }
        self.flights.push(Flight {
            call,
            store_key: flight.key,
            claim_ttl_secs: flight.claim_ttl_secs,
            stage: Stage::WantLease,
            claims: 0,
            following_since: None,
        });
    }

    /// Whether any flight follows another replica's claim (the timer must
    /// tick at [`FOLLOW_POLL`]).
    pub fn following(&self) -> bool {
        self.flights.iter().any(|flight| flight.following_since.is_some())
    }

    /// The operations due at `now_ms`, by call key; each is now out.
    pub fn due(&mut self, now_ms: u64) -> Vec<(TokenHash, EtcdOperation)> {
        let mut due = Vec::new();
        for flight in &mut self.flights {
            let operation = match flight.stage {
                Stage::WantLease => EtcdOperation::GrantLease { ttl_secs: flight.claim_ttl_secs },
                Stage::WantClaim(lease) => {
                    flight.claims += 1;
                    EtcdOperation::CreateIfAbsent {
                        key: flight.store_key.clone(),
                        value: PENDING.to_vec(),
                        lease,
                    }
                }
                Stage::Follow(at) if at <= now_ms => EtcdOperation::Get { key: flight.store_key.clone() },
                Stage::Follow(_) | Stage::Out => continue,
            };
            flight.stage = Stage::Out;
            due.push((flight.call.key, operation));
        }
        due
    }

    /// Takes the answer to `operation`, sent for the flight of `key`;
    /// `open` reads a value found under the key (never [`PENDING`]).
    pub fn answer<O>(
        &mut self,
        key: &TokenHash,
        operation: &EtcdOperation,
        answer: Result<EtcdAnswer, EtcdError>,
        now_ms: u64,
        open: impl FnOnce(&TokenCall, &[u8]) -> Found<O>,
    ) -> Next<O> {
        let Some(at) = self.flights.iter().position(|flight| flight.call.key == *key) else {
            return Next::Wait;
        };
        let flight = &mut self.flights[at];
        let step = match (operation, answer) {
            (_, Err(error)) => Step::Fault(crate::store::fault_label(&error)),
            (EtcdOperation::GrantLease { .. }, Ok(EtcdAnswer::Lease(lease))) => {
                flight.stage = Stage::WantClaim(lease.id);
                return Next::Wait;
            }
            (EtcdOperation::CreateIfAbsent { .. }, Ok(EtcdAnswer::Created)) => Step::Claimed,
            (EtcdOperation::CreateIfAbsent { .. }, Ok(EtcdAnswer::AlreadyExists(found)))
            | (EtcdOperation::Get { .. }, Ok(EtcdAnswer::Value(Some(found)))) => Step::Found(found),
            (EtcdOperation::Get { .. }, Ok(EtcdAnswer::Value(None))) => Step::Vacant,
            (_, Ok(_)) => Step::Fault("store_malformed"),
        };
        match step {
            Step::Found(StoredValue { value, .. }) if value == PENDING => {
                let since = *flight.following_since.get_or_insert(now_ms);
                // A claim lives its lease at most; one seen for longer is
                // not a live call's.
                let limit_ms = u64::from(flight.claim_ttl_secs) * 1000 + 1000;
                if now_ms.saturating_sub(since) > limit_ms {
                    return self.call_here(at, CallHere::NoUsableClaim);
                }
                flight.stage = Stage::Follow(now_ms + FOLLOW_POLL.as_millis() as u64);
                Next::Wait
            }
            Step::Found(StoredValue { value, .. }) => match open(&flight.call, &value) {
                Found::Token(outcome) => {
                    let flight = self.flights.swap_remove(at);
                    Next::Done(flight.call, outcome)
                }
                Found::Unusable => self.call_here(at, CallHere::NoUsableClaim),
            },
            Step::Vacant if flight.claims < MAX_CLAIMS => {
                flight.following_since = None;
                flight.stage = Stage::WantLease;
                Next::Wait
            }
            Step::Vacant => self.call_here(at, CallHere::NoUsableClaim),
            Step::Claimed => self.call_here(at, CallHere::Claimed),
            Step::Fault(label) => self.call_here(at, CallHere::StoreFault(label)),
        }
    }

    /// Ends the flight at `at`: this replica makes the call.
    fn call_here<O>(&mut self, at: usize, why: CallHere) -> Next<O> {
        let flight = self.flights.swap_remove(at);
        Next::Call(flight.call, why)
    }
}

/// An answer, as far as the flight is concerned.
enum Step {
    Claimed,
    Found(StoredValue),
    Vacant,
    Fault(&'static str),
}
