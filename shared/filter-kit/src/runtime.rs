//! The life of a request, for every filter. One [`Runtime`] per VM holds the
//! requests its filter paused (while their body is read, or while they wait
//! for keys, a token call or a store operation), makes each call once per
//! key (and, with leases, once across workers), fetches key sets, runs the
//! timer, and
//! answers what waited too long. A filter brings its decisions through
//! [`Filter`]; the runtime reaches the proxy only through [`Host`], so all
//! of it runs natively in tests against `TestHost`.
//!
//! A request's phase is where the runtime keeps it: absent (deciding, or
//! forwarded), [`Held::ReadingBody`], [`Held::Waiting`] for a [`WaitFor`]
//! with the round it is in, or, forwarded with its answer to be read,
//! [`Held::Answering`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use baton_token::TokenHash;
use baton_token::secret::Secret;

use crate::fleet::{CallHere, FOLLOW_POLL, FleetFlight, FleetFlights, Found, Next};
use crate::host::{Body, CalloutResponse, HeaderMap, Host, LogLevel};
use crate::key_fetches::KeyFetches;
use crate::keys::{KeyStore, MAX_JWKS_BYTES};
use crate::lease::{Lease, LeaseTable};
use crate::reply::Reply;
use crate::request_headers::{RequestHeaders, remove_spellings};
use crate::store::{EtcdAnswer, EtcdEndpoint, EtcdError, EtcdOperation, StoreCall, read_answer};
use crate::ticker::{FAST_TICK, Ticker};
use crate::token_calls::{Flights, TokenCall, TokenEndpoint};
use crate::verifier::KeyWait;

/// Largest token endpoint answer read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Extra time a request may wait beyond what it waits for may take.
const WAIT_GRACE_SECS: u64 = 3;
/// How long a request held for its body may wait for the first bytes.
const BODY_WAIT_SECS: u64 = 10;
/// How often a worker looks for a result another worker is fetching.
const REMOTE_POLL: Duration = Duration::from_millis(10);

/// What a callback tells the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the request.
    Continue,
    /// Hold it (paused, or answered locally).
    Pause,
}

/// What a held request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// A provider's keys.
    Keys(usize),
    /// A token endpoint call, by the key of what it obtains.
    Call(TokenHash),
    /// A store operation, by its callout: each request waits for its own
    /// (a single-use mark must answer one request, never two).
    Store(u32),
}

/// Which pass of the decision this is, and what the waiting brought.
#[derive(Debug)]
pub struct Round<'a, O> {
    /// 0 for the first pass.
    pub number: u8,
    /// Whether the decision may still wait for keys.
    pub keys: KeyWait,
    /// The outcome of the last call this request waited for.
    pub call: Option<(&'a TokenHash, &'a O)>,
    /// The request waited too long for this.
    pub overdue: Option<WaitFor>,
}

impl<O> Round<'_, O> {
    /// The first pass.
    pub fn first() -> Self {
        Round { number: 0, keys: KeyWait::Allowed, call: None, overdue: None }
    }
}

/// Forward the request with these changes.
#[derive(Debug, PartialEq)]
pub struct Forward<A> {
    /// Headers removed in every spelling a backend reads as the same name
    /// (`x_user_id` for `x-user-id`) before `set`.
    pub strip: Vec<String>,
    /// Headers removed (exactly this name).
    pub remove: Vec<String>,
    /// Headers set.
    pub set: Vec<(String, Secret)>,
    /// A property recorded for a later filter (filter state).
    pub property: Option<(&'static str, String)>,
    /// A new request body (`content-length` follows).
    pub body: Option<Vec<u8>>,
    /// What reading the upstream's answer needs, if the filter reads it.
    pub answer: Option<A>,
}

impl<A> Default for Forward<A> {
    fn default() -> Self {
        Self {
            strip: Vec::new(),
            remove: Vec::new(),
            set: Vec::new(),
            property: None,
            body: None,
            answer: None,
        }
    }
}

/// What a decision asks the runtime to do with a request: the one verdict
/// type of every filter's decision.
#[derive(Debug, PartialEq)]
pub enum Verdict<A> {
    /// Forward it.
    Forward(Forward<A>),
    /// Answer it.
    Reply(Reply),
    /// Hold it until its body is read, then decide again.
    ReadBody,
    /// Hold it until provider `.0`'s keys arrive (or cannot).
    AwaitKeys(usize),
    /// Hold it until this call is answered.
    AwaitCall(Box<TokenCall>),
    /// Hold it until this store operation is answered (dispatched at once,
    /// for this request alone).
    AwaitStore(Box<StoreCall>),
    /// Answer it once the store work the filter started for it (named by
    /// these step keys, see [`Filter::store_work_pending`]) is done, or
    /// took longer than it can.
    ReplyWhenStored(Reply, Vec<TokenHash>),
}

/// The upstream's answer, as its headers describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerHead<'a> {
    /// `:status`.
    pub status: Option<u16>,
    /// `content-type`.
    pub content_type: Option<&'a [u8]>,
    /// `content-encoding` (a compressed answer cannot be read).
    pub content_encoding: Option<&'a [u8]>,
}

/// How the filter reads an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// Not at all: it passes as it comes.
    Pass,
    /// Whole: held until complete (within the filter's body limit), then
    /// read and perhaps rewritten ([`Filter::rewrite_answer`]).
    Whole,
    /// As server-sent events: each event read (and perhaps rewritten) as
    /// it completes and forwarded at once, none held back longer
    /// ([`Filter::rewrite_event`]).
    Events,
}

/// What becomes of an answer read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerChange {
    /// It goes on as it is.
    Keep,
    /// It goes on with this body.
    Replace(Vec<u8>),
    /// It must not reach the client: this goes instead (status, headers,
    /// body).
    Refuse(Reply),
}

/// Why a request's body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Over the filter's limit.
    TooLarge,
    /// Never reached the filter (the proxy withheld it).
    NeverCame,
}

/// A filter's part: reading a request, deciding, and what its calls mean.
pub trait Filter {
    /// What a decision needs to know of a request.
    type Request;
    /// What a finished call gives the requests that waited for it.
    type Outcome: Clone;
    /// What reading the upstream's answer needs (`()` for filters that
    /// never read answers).
    type Answer;

    /// Whether the filter makes token endpoint calls ([`Verdict::AwaitCall`],
    /// background calls). The runtime's call machinery is compiled out of
    /// a filter that does not (a smaller `.wasm`).
    const MAKES_CALLS: bool = false;
    /// Whether the filter reads request bodies ([`Verdict::ReadBody`]).
    const READS_BODIES: bool = false;
    /// Whether the filter reads the upstream's answers.
    const READS_ANSWERS: bool = false;
    /// Whether the filter calls the shared store ([`Verdict::AwaitStore`]).
    const USES_STORE: bool = false;

    /// `User-Agent` of the filter's calls.
    fn user_agent(&self) -> &'static str;
    /// Reads the current request from its `headers` (read once by the
    /// runtime) and whatever else the proxy knows (`end_of_stream`: it has
    /// no body).
    fn read_request(
        &mut self,
        host: &dyn Host,
        headers: &RequestHeaders,
        end_of_stream: bool,
    ) -> Result<Self::Request, String>;
    /// Decides a request.
    fn decide(
        &mut self,
        host: &dyn Host,
        request: &Self::Request,
        round: Round<'_, Self::Outcome>,
    ) -> Verdict<Self::Answer>;
    /// Header names the request's trailers must not carry in any spelling.
    fn trailer_names(&self) -> Vec<String>;
    /// How long a request may wait for `what` before it is answered.
    fn wait_limit_secs(&self, what: WaitFor) -> u64;

    /// The key sets the filter fetches, if any.
    fn keys(&mut self) -> Option<&mut KeyStore> {
        None
    }
    /// Where `call` goes.
    fn endpoint(&self, _call: &TokenCall) -> Option<&TokenEndpoint> {
        None
    }
    /// Reads the answer to `call` (started at `started_ms`).
    fn finish_call(
        &mut self,
        host: &dyn Host,
        call: &TokenCall,
        response: &CalloutResponse,
        started_ms: u64,
    ) -> Self::Outcome;
    /// The outcome of a call that could not even be dispatched.
    fn dispatch_failed(&mut self, host: &dyn Host, call: &TokenCall) -> Self::Outcome;
    /// A call is about to go out.
    fn on_dispatch(&mut self, _host: &dyn Host, _call: &TokenCall) {}
    /// Where the store is, in a filter that uses it.
    fn store_endpoint(&self) -> Option<&EtcdEndpoint> {
        None
    }
    /// What the answer to store operation `call` gives the request that
    /// waited for it (`Err(EtcdError::NoResponse)` when it could not even
    /// be dispatched); `None` in a filter that does not use the store.
    fn finish_store(
        &mut self,
        _host: &dyn Host,
        _call: &StoreCall,
        _answer: Result<EtcdAnswer, EtcdError>,
    ) -> Option<Self::Outcome> {
        None
    }
    /// Store operations to make with no request waiting for them (say, a
    /// token written for the other replicas once it is obtained), asked
    /// for after every callout answer and on every tick, dispatched on the
    /// tick from the root context (Envoy cancels the calls of a request's
    /// context when the request ends). Their answers go to
    /// [`Filter::finish_store`] like any other (a dispatch refused as
    /// `Err(EtcdError::NoResponse)`), whose outcome wakes no request; it
    /// may queue the next step, dispatched at the next tick (made at once).
    fn store_jobs(&mut self, _host: &dyn Host) -> Vec<StoreCall> {
        Vec::new()
    }
    /// With a store the fleet shares, how `call` is made once for the
    /// fleet ([`crate::fleet`]); `None`: this replica makes it without
    /// asking the others.
    fn fleet_flight(&self, _call: &TokenCall) -> Option<FleetFlight> {
        None
    }
    /// What a value found under a fleet flight's key is (never the
    /// [`crate::fleet::PENDING`] marker): a token another replica obtained,
    /// as the outcome for the requests waiting for `call`, or unusable.
    fn fleet_found(&mut self, _host: &dyn Host, _call: &TokenCall, _value: &[u8]) -> Found<Self::Outcome> {
        Found::Unusable
    }
    /// `call`, taken to the fleet, is made by this replica, for `why`
    /// (counted, and logged when the store failed).
    fn fleet_calls_here(&mut self, _host: &dyn Host, _call: &TokenCall, _why: CallHere) {}
    /// Whether what `key` obtains is in the cache every worker shares
    /// (another worker's call finished).
    fn cached(&mut self, _host: &dyn Host, _key: &TokenHash) -> bool {
        false
    }
    /// Calls to make without a request asking (tokens kept fresh); `pending`
    /// says which keys are already queued or in flight.
    fn background_calls(
        &mut self,
        _host: &dyn Host,
        _pending: &dyn Fn(&TokenHash) -> bool,
    ) -> Vec<TokenCall> {
        Vec::new()
    }

    /// Adds the body that was read to a request held for it.
    fn add_body(&self, _request: &mut Self::Request, _body: Vec<u8>) {}
    /// The largest body (request or answer) the filter reads.
    fn max_body_bytes(&self) -> usize {
        usize::MAX
    }
    /// The answer to a request whose body could not be read.
    fn body_reply(&mut self, _host: &dyn Host, _problem: BodyProblem) -> Reply {
        Reply::json(500, "server_error", "the request could not be read")
    }
    /// How to read the upstream's answer (which `answer` may note).
    fn answer_mode(&self, _answer: &mut Self::Answer, _head: &AnswerHead<'_>) -> AnswerMode {
        AnswerMode::Pass
    }
    /// What becomes of an answer read whole ([`AnswerMode::Whole`]); `body`
    /// is `None` when it was larger than [`Filter::max_body_bytes`].
    fn rewrite_answer(
        &mut self,
        _host: &dyn Host,
        _answer: &mut Self::Answer,
        _body: Option<&[u8]>,
    ) -> AnswerChange {
        AnswerChange::Keep
    }
    /// New data for one event of an answer read as events
    /// ([`AnswerMode::Events`]), if the filter changes it.
    fn rewrite_event(&mut self, _host: &dyn Host, _answer: &mut Self::Answer, _data: &str) -> Option<String> {
        None
    }
    /// Whether the store work named by `step` (queued by the filter as
    /// background store jobs) is still under way.
    fn store_work_pending(&self, _step: &TokenHash) -> bool {
        false
    }
    /// The store work (step keys) the request's decision and the reading
    /// of `answer` started: the end of the answer (read whole or as
    /// events) is held while any is pending, so the client gets it only
    /// once every replica would find what the answer changed.
    fn answer_store_work<'a>(&self, _answer: &'a Self::Answer) -> &'a [TokenHash] {
        &[]
    }
}

/// What it takes to run a [`Filter`] in the proxy: its name, counters and
/// configuration.
pub trait Plugin: Filter + Sized + 'static {
    /// Name in log lines (`baton <name>: ...`).
    const NAME: &'static str;
    /// Version in log lines.
    const VERSION: &'static str;
    /// Every counter, defined when the VM starts.
    const COUNTERS: &'static [crate::host::Counter];
    /// Compiles the plugin configuration; an error names the field.
    fn configure(config: &[u8]) -> Result<Self, String>;
    /// The line logged once configured.
    fn summary(&self) -> String;
    /// Leases that let one worker of all make a given call, if the
    /// filter's calls obtain what every worker shares.
    fn leases(&self) -> Option<LeaseTable> {
        None
    }
    /// Once configured, before any request (e.g. shared-data tables).
    fn start(&mut self, _host: &dyn Host) {}
}

/// Hashes the proxy's request context ids. They are the proxy's own
/// counter, not chosen by a client, so the keyed SipHash (and its code in
/// every filter) is not needed: one multiply spreads them over the table.
#[derive(Debug, Default)]
struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A request the runtime keeps.
#[derive(Debug)]
enum Held<R, O, A> {
    /// Held until its body has been read.
    ReadingBody {
        request: R,
        /// Its headers as they came, if read in this pass (what forwarding
        /// it strips from).
        headers: Option<RequestHeaders>,
        since: u64,
        /// Whether a body callback came (the proxy lets the filter read it).
        body_seen: bool,
    },
    /// Held until what it waits for arrives.
    Waiting {
        request: R,
        waiting_for: WaitFor,
        round: u8,
        since: u64,
        /// The last call outcome it got, kept while it waits for more.
        outcome: Option<(TokenHash, O)>,
    },
    /// Forwarded; the filter may read the upstream's answer.
    Answering { answer: A, reading: Reading },
    /// Decided; its reply waits for store work (named by step keys).
    Replying { reply: Reply, work: Vec<TokenHash>, since: u64 },
}

/// How far an answer is read.
#[derive(Debug)]
enum Reading {
    /// Its headers have not come yet.
    NotYet,
    /// Held until complete.
    Whole,
    /// Event by event; `carry` is the start of an event not yet complete.
    Events { carry: Vec<u8> },
    /// Refused before it was complete: what still comes is dropped.
    Dropping,
    /// Complete (and changed as the filter chose), its end held since
    /// `since` for the store work its reading started.
    Ending { since: u64 },
}

/// One VM's requests, calls, key fetches and timer.
#[derive(Debug)]
pub struct Runtime<F: Filter> {
    /// The filter's own state and decisions.
    pub filter: F,
    #[allow(clippy::type_complexity)]
    held: HashMap<u32, Held<F::Request, F::Outcome, F::Answer>, BuildHasherDefault<ContextIdHasher>>,
    flights: Flights,
    fetches: KeyFetches,
    /// With leases, of all workers only one makes a given call.
    leases: Option<LeaseTable>,
    /// Calls another worker is making: this worker waits for their result.
    remote: Vec<TokenCall>,
    /// Store operations in flight, by callout; whether dispatched from the
    /// root context (no request waits for it).
    store_calls: Vec<(u32, StoreCall, bool)>,
    /// Store operations no request waits for, to dispatch at the next tick.
    detached: Vec<StoreCall>,
    /// Calls taken to the fleet before they are made.
    fleet: FleetFlights,
    /// Their store operations in flight: callout, call key, operation.
    fleet_calls: Vec<(u32, TokenHash, EtcdOperation)>,
    ticker: Ticker,
}

impl<F: Filter> Runtime<F> {
    /// A runtime for `filter`; `leases` coordinate calls across workers.
    pub fn new(filter: F, leases: Option<LeaseTable>) -> Self {
        Self {
            filter,
            held: HashMap::default(),
            flights: Flights::default(),
            fetches: KeyFetches::default(),
            leases,
            remote: Vec::new(),
            store_calls: Vec::new(),
            detached: Vec::new(),
            fleet: FleetFlights::default(),
            fleet_calls: Vec::new(),
            ticker: Ticker::new(),
        }
    }

    /// At configuration: creates the lease slots and starts the timer, whose
    /// first tick fetches keys and tokens. (Not fetched here: Envoy may
    /// configure a root context that it then discards.)
    pub fn start(&mut self, host: &dyn Host) {
        if F::MAKES_CALLS
            && let Some(leases) = &self.leases
        {
            leases.init(host);
        }
        self.ticker.set(host, FAST_TICK);
    }

    /// Makes the timer tick within `period` (say, to hand counts over).
    pub fn tick_within(&mut self, host: &dyn Host, period: Duration) {
        self.ticker.at_most(host, period);
    }

    /// Number of requests held (reading their body or waiting).
    pub fn held(&self) -> usize {
        self.held.values().filter(|held| !matches!(held, Held::Answering { .. })).count()
    }

    // ---- request callbacks (the request is the current context) ----

    /// The request's headers arrived.
    pub fn on_request_headers(&mut self, host: &dyn Host, id: u32, end_of_stream: bool) -> Action {
        let Ok(headers) = RequestHeaders::read(host) else {
            return fail_closed(host, "request headers unreadable");
        };
        let request = match self.filter.read_request(host, &headers, end_of_stream) {
            Ok(request) => request,
            Err(why) => return fail_closed(host, &why),
        };
        let verdict = self.filter.decide(host, &request, Round::first());
        self.handle(host, id, request, Some(headers), verdict, 0, None, false)
    }

    /// Body bytes arrived (`size` buffered, or all Envoy buffered when
    /// `None`); `complete` when the stream ended, with the last data frame
    /// or with trailers.
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        id: u32,
        size: Option<usize>,
        complete: bool,
    ) -> Action {
        match self.held.get_mut(&id) {
            None | Some(Held::Answering { .. }) => return Action::Continue,
            // Data going on while the headers wait would let the request
            // through unchecked: hold it (Envoy buffers it) until decided.
            Some(Held::Waiting { .. } | Held::Replying { .. }) => return Action::Pause,
            Some(Held::ReadingBody { body_seen, .. }) => *body_seen = true,
        }
        if !F::READS_BODIES {
            return Action::Continue;
        }
        let max = self.filter.max_body_bytes();
        if !complete {
            if size.is_some_and(|size| size > max) {
                return self.body_problem(host, id, BodyProblem::TooLarge);
            }
            return Action::Pause; // buffered by Envoy until the whole body is here
        }
        let body = host.body(Body::Request, size.unwrap_or(usize::MAX)).unwrap_or_default();
        if body.len() > max {
            return self.body_problem(host, id, BodyProblem::TooLarge);
        }
        let Some(Held::ReadingBody { mut request, headers, .. }) = self.held.remove(&id) else {
            return Action::Continue;
        };
        self.filter.add_body(&mut request, body);
        let verdict = self.filter.decide(host, &request, Round::first());
        self.handle(host, id, request, headers, verdict, 0, None, false)
    }

    /// Trailers end the request: a body being read is complete now. No
    /// header the filter sets may come in them either.
    pub fn on_request_trailers(&mut self, host: &dyn Host, id: u32) -> Action {
        if remove_spellings(host, HeaderMap::RequestTrailers, &self.filter.trailer_names(), None, &[])
            .is_err()
        {
            return fail_closed(host, "trailers could not be cleaned");
        }
        match self.held.get(&id) {
            Some(Held::ReadingBody { .. }) => self.on_request_body(host, id, None, true),
            Some(Held::Waiting { .. } | Held::Replying { .. }) => Action::Pause,
            None | Some(Held::Answering { .. }) => Action::Continue,
        }
    }

    /// The upstream's answer headers arrived (`end_of_stream`: no body
    /// follows).
    pub fn on_response_headers(&mut self, host: &dyn Host, id: u32, end_of_stream: bool) -> Action {
        if !F::READS_ANSWERS {
            return Action::Continue;
        }
        let Some(Held::Answering { answer, reading }) = self.held.get_mut(&id) else {
            return Action::Continue;
        };
        // One read of the map for the three headers that say how to read it.
        let headers = host.headers(HeaderMap::ResponseHeaders).unwrap_or_default();
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.clone());
        let (status, content_type, content_encoding) =
            (header(":status"), header("content-type"), header("content-encoding"));
        let head = AnswerHead {
            status: status.as_deref().and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse().ok()),
            content_type: content_type.as_deref(),
            content_encoding: content_encoding.as_deref(),
        };
        match self.filter.answer_mode(answer, &head) {
            // Nothing to read, or nothing wanted of it.
            _ if end_of_stream => {}
            AnswerMode::Pass => {}
            AnswerMode::Whole => {
                *reading = Reading::Whole;
                return Action::Pause;
            }
            AnswerMode::Events => {
                // Events may change length: the answer's length is unknown.
                if host.remove_header(HeaderMap::ResponseHeaders, "content-length").is_ok() {
                    *reading = Reading::Events { carry: Vec::new() };
                    return Action::Continue;
                }
            }
        }
        self.held.remove(&id);
        Action::Continue
    }

    /// Answer bytes arrived (as [`Runtime::on_request_body`]).
    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        id: u32,
        size: Option<usize>,
        complete: bool,
    ) -> Action {
        if !F::READS_ANSWERS {
            return Action::Continue;
        }
        match self.held.get(&id) {
            Some(Held::Answering { reading: Reading::Whole, .. }) => {
                self.whole_answer(host, id, size, complete)
            }
            Some(Held::Answering { reading: Reading::Events { .. }, .. }) => {
                self.answer_events(host, id, size, complete)
            }
            Some(Held::Answering { reading: Reading::Dropping, .. }) => {
                if complete {
                    self.held.remove(&id);
                }
                if host.replace_body(Body::Response, b"").is_err() {
                    host.reset_request();
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    /// An answer read whole: held until complete, then kept, replaced or
    /// refused.
    fn whole_answer(&mut self, host: &dyn Host, id: u32, size: Option<usize>, complete: bool) -> Action {
        let max = self.filter.max_body_bytes();
        let too_large = size.is_some_and(|size| size > max);
        if !complete && !too_large {
            return Action::Pause;
        }
        let Some(Held::Answering { mut answer, .. }) = self.held.remove(&id) else {
            return Action::Continue;
        };
        let body = if too_large {
            None
        } else {
            Some(host.body(Body::Response, size.unwrap_or(usize::MAX)).unwrap_or_default())
        };
        let body = body.filter(|body| body.len() <= max);
        let applied = match self.filter.rewrite_answer(host, &mut answer, body.as_deref()) {
            AnswerChange::Keep => Ok(()),
            AnswerChange::Replace(bytes) => replace_answer(host, &bytes),
            AnswerChange::Refuse(reply) => {
                if !complete {
                    self.held.insert(id, Held::Answering { answer, reading: Reading::Dropping });
                }
                return go_on_or_reset(host, refuse_answer(host, &reply));
            }
        };
        if applied.is_err() {
            return go_on_or_reset(host, applied);
        }
        if complete && work_pending(&self.filter, self.filter.answer_store_work(&answer)) {
            self.held.insert(
                id,
                Held::Answering { answer, reading: Reading::Ending { since: host.now_unix_secs() } },
            );
            self.queue_store_jobs(host);
            return Action::Pause;
        }
        Action::Continue
    }

    /// Lets go the answers and replies whose store work is done (or took
    /// longer than it can: then they go on, as after a failed write).
    fn release_held_for_store(&mut self, host: &dyn Host) {
        let now = host.now_unix_secs();
        let limit = 2 * self.filter.wait_limit_secs(WaitFor::Store(0)) + WAIT_GRACE_SECS;
        let filter = &self.filter;
        let done: Vec<(u32, bool)> = self
            .held
            .iter()
            .filter_map(|(id, held)| {
                let (since, work) = match held {
                    Held::Answering { answer, reading: Reading::Ending { since } } => {
                        (*since, filter.answer_store_work(answer))
                    }
                    Held::Replying { work, since, .. } => (*since, work.as_slice()),
                    _ => return None,
                };
                let overdue = now > since + limit;
                (overdue || !work_pending(filter, work)).then_some((*id, overdue))
            })
            .collect();
        for (id, overdue) in done {
            let held = self.held.remove(&id);
            if overdue {
                host.log(
                    LogLevel::Warn,
                    "an answer held for its store writes went on without them (overdue)",
                );
            }
            if !host.enter_context(id) {
                continue;
            }
            match held {
                Some(Held::Replying { reply, .. }) => send(host, &reply),
                _ => {
                    if host.resume_answer().is_err() {
                        host.reset_request();
                    }
                }
            }
        }
    }

    /// An answer read as events: the complete events in this chunk (with
    /// the start carried from the last one) are read and forwarded now; an
    /// incomplete end is carried to the next chunk. An event larger than
    /// the filter's limit stops the reading: it and the rest pass as sent.
    fn answer_events(&mut self, host: &dyn Host, id: u32, size: Option<usize>, complete: bool) -> Action {
        let max = self.filter.max_body_bytes();
        let chunk = match size {
            Some(size) => host.body(Body::Response, size).unwrap_or_default(),
            None => Vec::new(),
        };
        let Some(Held::Answering { answer, reading }) = self.held.get_mut(&id) else {
            return Action::Continue;
        };
        let Reading::Events { carry } = &mut *reading else {
            return Action::Continue;
        };
        let mut seen = std::mem::take(carry);
        seen.extend_from_slice(&chunk);
        let complete_events = crate::sse::events(&seen);
        let ready: usize = complete_events.iter().map(|event| event.len()).sum();
        let mut out = Vec::with_capacity(seen.len());
        let mut changed = false;
        for event in complete_events {
            let new = crate::sse::data(event).and_then(|data| self.filter.rewrite_event(host, answer, &data));
            match new {
                Some(data) => {
                    out.extend_from_slice(&crate::sse::with_data(event, &data));
                    changed = true;
                }
                None => out.extend_from_slice(event),
            }
        }
        let rest = &seen[ready..];
        let give_up = !complete && rest.len() > max;
        let mut action = Action::Continue;
        if complete && work_pending(&self.filter, self.filter.answer_store_work(answer)) {
            // The stream's end (what a client waits for before its next
            // message) goes on once the store work it started is done.
            out.extend_from_slice(rest);
            *reading = Reading::Ending { since: host.now_unix_secs() };
            self.queue_store_jobs(host);
            action = Action::Pause;
        } else if complete || give_up {
            out.extend_from_slice(rest);
            self.held.remove(&id);
            if give_up {
                host.log(
                    LogLevel::Warn,
                    "an event of the upstream's stream is larger than maxBodyBytes: the rest passes unread",
                );
            }
        } else {
            *carry = rest.to_vec();
        }
        if (changed || out.len() != chunk.len()) && host.replace_body(Body::Response, &out).is_err() {
            host.log(
                LogLevel::Error,
                "an event of the upstream's answer could not be forwarded; resetting it",
            );
            host.reset_request();
            return Action::Continue;
        }
        action
    }

    /// The request is over (or its client went away).
    pub fn on_done(&mut self, id: u32) {
        self.held.remove(&id);
    }

    // ---- the VM's callbacks ----

    /// The timer ticked.
    pub fn on_tick(&mut self, host: &dyn Host) {
        // First, while the root context is current (what follows may enter
        // request contexts).
        if F::USES_STORE {
            self.dispatch_store_jobs(host);
        }
        self.poll_keys(host);
        if F::MAKES_CALLS {
            let flights = &self.flights;
            for call in self.filter.background_calls(host, &|key| flights.pending(key)) {
                self.flights.request(call);
            }
            self.poll_remote(host);
            self.dispatch_queued(host);
            if F::USES_STORE {
                self.dispatch_fleet(host);
            }
        }
        self.answer_overdue(host);
        if F::USES_STORE {
            self.release_held_for_store(host);
        }
        if F::READS_BODIES {
            self.answer_bodiless(host);
        }
        if !self.remote.is_empty() {
            self.ticker.set(host, REMOTE_POLL);
        } else if self.fleet.following() {
            self.ticker.set(host, FOLLOW_POLL);
        } else {
            let keys_busy = self.filter.keys().is_some_and(|keys| keys.needs_attention());
            let busy = self.held() > 0 || self.flights.busy() || self.fetches.busy() || keys_busy;
            self.ticker.settle(host, busy);
        }
    }

    /// The answer to call `token` arrived (read through the host).
    pub fn on_callout(&mut self, host: &dyn Host, token: u32, num_headers: usize, body_size: usize) {
        if self.fetches.owns(token) {
            let response = host.callout_response(num_headers, body_size, MAX_JWKS_BYTES);
            let provider = match self.filter.keys() {
                Some(keys) => self.fetches.complete(token, &response, keys, host),
                None => None,
            };
            if let Some(provider) = provider {
                self.wake(host, WaitFor::Keys(provider), None);
            }
        } else if F::MAKES_CALLS
            && let Some((call, started)) = self.flights.complete(token)
        {
            let response = host.callout_response(num_headers, body_size, MAX_TOKEN_RESPONSE_BYTES);
            let outcome = self.filter.finish_call(host, &call, &response, started);
            // The result is in the shared cache (or was a failure): workers
            // waiting on this lease stop waiting.
            if let Some(leases) = &self.leases {
                leases.release(host, &call.key);
            }
            self.wake(host, WaitFor::Call(call.key), Some((call.key, outcome)));
            // A request woken above may have queued the next call it needs.
            self.dispatch_queued(host);
        } else if F::USES_STORE
            && let Some(at) = self.fleet_calls.iter().position(|(callout, ..)| *callout == token)
        {
            let (_, key, operation) = self.fleet_calls.swap_remove(at);
            let answer = read_answer(host, &operation, num_headers, body_size);
            self.fleet_answered(host, &key, &operation, answer);
        } else if F::USES_STORE
            && let Some(at) = self.store_calls.iter().position(|(callout, ..)| *callout == token)
        {
            let (_, call, from_root) = self.store_calls.swap_remove(at);
            let answer = read_answer(host, &call.operation, num_headers, body_size);
            let outcome = self.filter.finish_store(host, &call, answer);
            if from_root {
                // Its answer came to the root context, still current: the
                // next step of that work goes out now, not at a tick.
                self.dispatch_store_jobs(host);
            }
            if let Some(outcome) = outcome {
                self.wake(host, WaitFor::Store(token), Some((call.key, outcome)));
            }
            if F::MAKES_CALLS {
                self.dispatch_queued(host);
            }
            // An answer or reply held for this work may go on now.
            self.release_held_for_store(host);
        }
        if F::USES_STORE {
            self.queue_store_jobs(host);
        }
    }

    /// Queues the filter's store jobs for the next tick, made at once: they
    /// go out from the root context, since a call dispatched from a
    /// request's context (the one just woken, or delivering an answer) is
    /// cancelled by Envoy when that request ends.
    fn queue_store_jobs(&mut self, host: &dyn Host) {
        let jobs = self.filter.store_jobs(host);
        if !jobs.is_empty() {
            self.detached.extend(jobs);
            self.ticker.tick_now(host);
        }
    }

    // ---- inside ----

    /// Carries out `verdict` for request `id` (the current context);
    /// `headers`: its headers, when still as the proxy holds them;
    /// `resume`: the request was paused, so going on means resuming it.
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        host: &dyn Host,
        id: u32,
        request: F::Request,
        headers: Option<RequestHeaders>,
        verdict: Verdict<F::Answer>,
        round: u8,
        outcome: Option<(TokenHash, F::Outcome)>,
        resume: bool,
    ) -> Action {
        let now = host.now_unix_secs();
        if F::USES_STORE {
            // Its reply or answer may wait for what the decision queued.
            self.queue_store_jobs(host);
        }
        let waiting_for = match verdict {
            Verdict::Forward(forward) => {
                if let Err(why) = apply_forward::<F>(host, &forward, headers.as_ref()) {
                    return fail_closed(host, why);
                }
                if F::READS_ANSWERS
                    && let Some(answer) = forward.answer
                {
                    self.held.insert(id, Held::Answering { answer, reading: Reading::NotYet });
                }
                if resume && host.resume_request().is_err() {
                    host.log(LogLevel::Warn, "a request that waited could not be resumed");
                }
                return Action::Continue;
            }
            Verdict::Reply(reply) => {
                send(host, &reply);
                return Action::Pause;
            }
            Verdict::ReplyWhenStored(reply, work) if F::USES_STORE => {
                if work_pending(&self.filter, &work) {
                    self.held.insert(id, Held::Replying { reply, work, since: now });
                } else {
                    send(host, &reply);
                }
                return Action::Pause;
            }
            Verdict::ReadBody if F::READS_BODIES => {
                self.held.insert(id, Held::ReadingBody { request, headers, since: now, body_seen: false });
                self.ticker.tick_now(host);
                return Action::Pause;
            }
            Verdict::AwaitKeys(provider) => WaitFor::Keys(provider),
            Verdict::AwaitCall(call) if F::MAKES_CALLS => {
                let key = call.key;
                self.flights.request(*call);
                WaitFor::Call(key)
            }
            Verdict::AwaitStore(call) if F::USES_STORE => {
                let dispatched =
                    self.filter.store_endpoint().map(|endpoint| endpoint.dispatch(host, &call.operation));
                if let Some(Ok(token)) = dispatched {
                    self.store_calls.push((token, *call, false));
                    WaitFor::Store(token)
                } else {
                    // Decided again at once, as after a store that did not
                    // answer.
                    host.log(
                        LogLevel::Warn,
                        &format!("store call ({}) dispatch failed", call.operation.path()),
                    );
                    let Some(outcome) = self.filter.finish_store(host, &call, Err(EtcdError::NoResponse))
                    else {
                        return fail_closed(host, "the filter asked for what it does not declare");
                    };
                    let next = Round {
                        number: round + 1,
                        keys: KeyWait::Allowed,
                        call: Some((&call.key, &outcome)),
                        overdue: None,
                    };
                    let verdict = self.filter.decide(host, &request, next);
                    let outcome = Some((call.key, outcome));
                    return self.handle(host, id, request, headers, verdict, round + 1, outcome, resume);
                }
            }
            Verdict::ReadBody
            | Verdict::AwaitCall(_)
            | Verdict::AwaitStore(_)
            | Verdict::ReplyWhenStored(..) => {
                return fail_closed(host, "the filter asked for what it does not declare");
            }
        };
        self.held.insert(id, Held::Waiting { request, waiting_for, round, since: now, outcome });
        // Start the work now rather than at the next regular tick.
        self.ticker.tick_now(host);
        Action::Pause
    }

    /// Decides again, in its own context, each request waiting for `what`.
    fn wake(&mut self, host: &dyn Host, what: WaitFor, outcome: Option<(TokenHash, F::Outcome)>) {
        let ids: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, held)| matches!(held, Held::Waiting { waiting_for, .. } if *waiting_for == what))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(Held::Waiting { request, round, outcome: kept, .. }) = self.held.remove(&id) else {
                continue;
            };
            if !host.enter_context(id) {
                continue; // the request is gone
            }
            let outcome = match &outcome {
                Some(outcome) => Some(outcome.clone()),
                None => kept,
            };
            self.decide_again(host, id, request, what, round, outcome, false);
        }
    }

    /// Decides again request `id` (the current context), which waited for
    /// `waited` (`overdue`: too long) in `round`, with the last call outcome.
    #[allow(clippy::too_many_arguments)]
    fn decide_again(
        &mut self,
        host: &dyn Host,
        id: u32,
        request: F::Request,
        waited: WaitFor,
        round: u8,
        outcome: Option<(TokenHash, F::Outcome)>,
        overdue: bool,
    ) {
        let next = Round {
            number: round + 1,
            keys: if matches!(waited, WaitFor::Keys(_)) { KeyWait::Exhausted } else { KeyWait::Allowed },
            call: outcome.as_ref().map(|(key, outcome)| (key, outcome)),
            overdue: overdue.then_some(waited),
        };
        let verdict = self.filter.decide(host, &request, next);
        self.handle(host, id, request, None, verdict, round + 1, outcome, true);
    }

    /// Answers, through a last decision, the requests that waited longer
    /// than what they wait for can take.
    fn answer_overdue(&mut self, host: &dyn Host) {
        let now = host.now_unix_secs();
        let filter = &self.filter;
        let overdue: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, held)| match held {
                Held::Waiting { waiting_for, since, .. } => {
                    now > since + filter.wait_limit_secs(*waiting_for) + WAIT_GRACE_SECS
                }
                // A reply held for store work: see release_held_for_store.
                Held::ReadingBody { .. } | Held::Answering { .. } | Held::Replying { .. } => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            let Some(Held::Waiting { request, waiting_for, round, outcome, .. }) = self.held.remove(&id)
            else {
                continue;
            };
            if !host.enter_context(id) {
                continue;
            }
            self.decide_again(host, id, request, waiting_for, round, outcome, true);
        }
    }

    /// Answers requests whose body never reached the filter. With Envoy's
    /// default for Wasm filters, holding the headers also withholds the
    /// body: the filter needs `allow_on_headers_stop_iteration: true`.
    fn answer_bodiless(&mut self, host: &dyn Host) {
        let now = host.now_unix_secs();
        let stuck: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, held)| {
                matches!(held, Held::ReadingBody { since, body_seen: false, .. } if now > since + BODY_WAIT_SECS)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.held.remove(&id);
            host.log(
                LogLevel::Error,
                "a protected request's body never reached the filter: set allow_on_headers_stop_iteration: true \
                 in the Wasm plugin config (Envoy >= 1.35); answering 500",
            );
            if host.enter_context(id) {
                let reply = self.filter.body_reply(host, BodyProblem::NeverCame);
                send(host, &reply);
            }
        }
    }

    fn body_problem(&mut self, host: &dyn Host, id: u32, problem: BodyProblem) -> Action {
        self.held.remove(&id);
        let reply = self.filter.body_reply(host, problem);
        send(host, &reply);
        Action::Pause
    }

    /// Picks up key sets other workers fetched, starts due fetches, and
    /// decides again the requests whose keys changed or cannot come.
    fn poll_keys(&mut self, host: &dyn Host) {
        let user_agent = self.filter.user_agent();
        let news = match self.filter.keys() {
            Some(keys) => self.fetches.poll(keys, host, user_agent),
            None => return,
        };
        for provider in news {
            self.wake(host, WaitFor::Keys(provider), None);
        }
    }

    /// Dispatches the queued calls. With leases, a call another worker is
    /// making is waited for instead, and a call another worker already
    /// finished is not made again.
    fn dispatch_queued(&mut self, host: &dyn Host) {
        for call in self.flights.take_queued() {
            let Some(timeout_ms) = self.filter.endpoint(&call).map(|endpoint| endpoint.timeout_ms) else {
                self.flights.abandoned(&call.key);
                continue;
            };
            if let Some(leases) = &self.leases {
                let lease = leases.acquire(host, &call.key, host.now_unix_millis(), timeout_ms + 1000);
                if lease == Lease::HeldElsewhere {
                    self.remote.push(call);
                    continue;
                }
                // The request that queued this call missed the cache; since
                // then another worker may have made the call, cached its
                // result and let go of the lease just taken here.
                if self.filter.cached(host, &call.key) {
                    if lease == Lease::Acquired {
                        leases.release(host, &call.key);
                    }
                    self.flights.abandoned(&call.key);
                    self.wake(host, WaitFor::Call(call.key), None);
                    continue;
                }
            }
            // Made once for the fleet: claimed in the store first (the
            // key stays pending in this worker meanwhile).
            if F::USES_STORE
                && let Some(flight) = self.filter.fleet_flight(&call)
            {
                self.fleet.start(call, flight);
                self.ticker.tick_now(host);
                continue;
            }
            self.dispatch_call(host, call);
        }
    }

    /// Dispatches `call` to its token endpoint; one that cannot go out is
    /// finished at once as failed.
    fn dispatch_call(&mut self, host: &dyn Host, call: TokenCall) {
        self.filter.on_dispatch(host, &call);
        let user_agent = self.filter.user_agent();
        let dispatched =
            self.filter.endpoint(&call).map(|endpoint| endpoint.dispatch(host, &call, user_agent));
        match dispatched {
            Some(Ok(token)) => self.flights.dispatched(call, token, host.now_unix_millis()),
            _ => {
                self.flights.abandoned(&call.key);
                let cluster = self.filter.endpoint(&call).map_or("?", |endpoint| endpoint.cluster.as_str());
                host.log(
                    LogLevel::Warn,
                    &format!("cluster={cluster} token call ({}) dispatch failed", call.label),
                );
                let outcome = self.filter.dispatch_failed(host, &call);
                self.wake(host, WaitFor::Call(call.key), Some((call.key, outcome)));
            }
        }
    }

    /// Dispatches the fleet flights' store operations that are due (from
    /// the root context: on the tick, or on the answer to one of them).
    fn dispatch_fleet(&mut self, host: &dyn Host) {
        for (key, operation) in self.fleet.due(host.now_unix_millis()) {
            let dispatched = self.filter.store_endpoint().map(|endpoint| endpoint.dispatch(host, &operation));
            match dispatched {
                Some(Ok(token)) => self.fleet_calls.push((token, key, operation)),
                _ => self.fleet_answered(host, &key, &operation, Err(EtcdError::NoResponse)),
            }
        }
    }

    /// Takes the answer to a fleet flight's store operation: the next
    /// operation goes out, the call is made here, or another replica's
    /// token wakes the requests that waited for it.
    fn fleet_answered(
        &mut self,
        host: &dyn Host,
        key: &TokenHash,
        operation: &EtcdOperation,
        answer: Result<EtcdAnswer, EtcdError>,
    ) {
        let filter = &mut self.filter;
        let next = self.fleet.answer(key, operation, answer, host.now_unix_millis(), |call, value| {
            filter.fleet_found(host, call, value)
        });
        match next {
            Next::Wait => self.dispatch_fleet(host),
            Next::Call(call, why) => {
                self.filter.fleet_calls_here(host, &call, why);
                self.dispatch_call(host, call);
            }
            Next::Done(call, outcome) => {
                self.flights.abandoned(&call.key);
                if let Some(leases) = &self.leases {
                    leases.release(host, &call.key);
                }
                self.wake(host, WaitFor::Call(call.key), Some((call.key, outcome)));
            }
        }
    }

    /// Dispatches the store operations no request waits for (on the tick,
    /// from the root context); one whose dispatch is refused is finished at
    /// once as unanswered (what that queues waits for the next tick).
    fn dispatch_store_jobs(&mut self, host: &dyn Host) {
        let mut jobs = std::mem::take(&mut self.detached);
        jobs.extend(self.filter.store_jobs(host));
        for call in jobs {
            let dispatched =
                self.filter.store_endpoint().map(|endpoint| endpoint.dispatch(host, &call.operation));
            if let Some(Ok(token)) = dispatched {
                self.store_calls.push((token, call, true));
            } else {
                host.log(LogLevel::Warn, &format!("store call ({}) dispatch failed", call.operation.path()));
                let _ = self.filter.finish_store(host, &call, Err(EtcdError::NoResponse));
            }
        }
    }

    /// Picks up results other workers fetched for this worker's waiting
    /// requests; takes over a call whose lease ended without a result.
    fn poll_remote(&mut self, host: &dyn Host) {
        let Some(leases) = self.leases.clone() else {
            return;
        };
        let now_ms = host.now_unix_millis();
        for call in std::mem::take(&mut self.remote) {
            let key = call.key;
            if self.filter.cached(host, &key) {
                self.flights.abandoned(&key);
                self.wake(host, WaitFor::Call(key), None);
            } else if !leases.held(host, &key, now_ms) {
                self.flights.abandoned(&key);
                self.flights.request(call);
            } else {
                self.remote.push(call);
            }
        }
    }
}

/// Whether any of the store work named by `work` is still under way (a
/// free function: what names it may be borrowed from the runtime's table).
fn work_pending<F: Filter>(filter: &F, work: &[TokenHash]) -> bool {
    work.iter().any(|step| filter.store_work_pending(step))
}

/// Goes on after an answer was changed, or resets it when the change could
/// not be made: neither the answer as it came nor a half-changed one goes
/// on.
fn go_on_or_reset(host: &dyn Host, applied: Result<(), crate::host::HostError>) -> Action {
    if applied.is_err() {
        host.log(LogLevel::Error, "the upstream's answer could not be rewritten; resetting it");
        host.reset_request();
    }
    Action::Continue
}

/// Replaces the current answer's body (and its length).
fn replace_answer(host: &dyn Host, bytes: &[u8]) -> Result<(), crate::host::HostError> {
    host.replace_body(Body::Response, bytes)?;
    host.set_header(HeaderMap::ResponseHeaders, "content-length", bytes.len().to_string().as_bytes())
}

/// Turns the current answer into `reply`: its status, its headers, its
/// body, and no encoding or validator of the answer it replaces.
fn refuse_answer(host: &dyn Host, reply: &Reply) -> Result<(), crate::host::HostError> {
    host.set_header(HeaderMap::ResponseHeaders, ":status", reply.status.to_string().as_bytes())?;
    for name in ["content-encoding", "etag", "last-modified"] {
        host.remove_header(HeaderMap::ResponseHeaders, name)?;
    }
    for (name, value) in &reply.headers {
        host.set_header(HeaderMap::ResponseHeaders, name, value.as_bytes())?;
    }
    replace_answer(host, reply.body.as_bytes())
}

/// Applies a forward's changes to the current request (the body only in a
/// filter that reads bodies: in the others the code is not compiled in).
fn apply_forward<F: Filter>(
    host: &dyn Host,
    forward: &Forward<F::Answer>,
    headers: Option<&RequestHeaders>,
) -> Result<(), &'static str> {
    let set: Vec<&str> = forward.set.iter().map(|(name, _)| name.as_str()).collect();
    remove_spellings(host, HeaderMap::RequestHeaders, &forward.strip, headers, &set)
        .map_err(|_| "identity headers could not be removed")?;
    for name in &forward.remove {
        host.remove_header(HeaderMap::RequestHeaders, name).map_err(|_| "a header could not be removed")?;
    }
    for (name, value) in &forward.set {
        host.set_header(HeaderMap::RequestHeaders, name, value.expose().as_bytes())
            .map_err(|_| "a header could not be set")?;
    }
    if let Some((name, value)) = &forward.property {
        host.set_property(&[name], value.as_bytes())
            .map_err(|_| "the verified token could not be recorded")?;
    }
    if F::READS_BODIES
        && let Some(body) = &forward.body
    {
        host.replace_body(Body::Request, body).map_err(|_| "the body could not be rewritten")?;
        host.set_header(HeaderMap::RequestHeaders, "content-length", body.len().to_string().as_bytes())
            .map_err(|_| "content-length could not be set")?;
    }
    Ok(())
}

/// Sends `reply` as the current request's answer; resets the request if
/// even that fails.
pub fn send(host: &dyn Host, reply: &Reply) {
    let headers: Vec<(&str, &str)> =
        reply.headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    if host.send_reply(reply.status, &headers, reply.body.as_bytes()).is_err() {
        host.log(LogLevel::Error, "local reply could not be sent; resetting the request");
        host.reset_request();
    }
}

/// Answers 500 without forwarding: only when the proxy itself fails.
pub fn fail_closed(host: &dyn Host, why: &str) -> Action {
    host.log(LogLevel::Error, &format!("request refused: {why}"));
    send(host, &Reply::json(500, "server_error", "the request could not be checked"));
    Action::Pause
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
