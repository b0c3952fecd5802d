//! An upstream stand-in for Baton's tests: records every request it
//! receives (what the upstream actually saw after the filters ran) and
//! answers with a JSON echo of it.
//!
//! Every request gets `200 application/json`:
//! `{"method", "path", "query", "headers": [[name, value], ...], "body",
//! "body_encoding": "utf-8"|"base64", "bearer_claims"}`, where
//! `bearer_claims` is the unverified payload of a JWT bearer token (else
//! `null`). `/status/NNN` answers the same echo with status NNN. Handlers
//! registered with [`EchoBackend::with_handler`] take over matching paths
//! (e.g. to stream `text/event-stream`, see [`sse_reply`]).

use core::net::SocketAddr;
use core::time::Duration;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub mod a2a_agent;
pub mod portfolio;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_kit::{Reply, Request, Response, Server};
use serde_json::{Value, json};

/// A handler for paths under a prefix; see [`EchoBackend::with_handler`].
pub type PathHandler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    /// (path prefix, handler); later registrations win.
    handlers: Mutex<Vec<(String, PathHandler)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not break the backend for the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running echo server on 127.0.0.1. Dropping it stops the server.
pub struct EchoBackend {
    shared: Arc<Shared>,
    server: Server,
}

impl core::fmt::Debug for EchoBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EchoBackend").field("addr", &self.server.addr()).finish_non_exhaustive()
    }
}

impl EchoBackend {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> io::Result<EchoBackend> {
        Self::start_on(0)
    }

    /// Starts on `127.0.0.1:{port}` (0 picks a free port).
    pub fn start_on(port: u16) -> io::Result<EchoBackend> {
        let shared = Arc::new(Shared::default());
        let handler_shared = Arc::clone(&shared);
        let server = Server::start(
            &format!("127.0.0.1:{port}"),
            Arc::new(move |request: &Request| handle(&handler_shared, request)),
        )?;
        Ok(EchoBackend { shared, server })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Serves requests whose path starts with `path_prefix` with `handler`
    /// instead of the echo (they are still recorded). The most recently
    /// registered matching prefix wins.
    pub fn with_handler(
        &self,
        path_prefix: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        lock(&self.shared.handlers).push((path_prefix.to_string(), Arc::new(handler)));
        self
    }

    /// An echo backend that answers as an A2A agent on every path (see
    /// [`a2a_agent`]).
    pub fn start_a2a_agent() -> io::Result<EchoBackend> {
        let backend = Self::start()?;
        backend.with_handler("/", a2a_agent::reply);
        Ok(backend)
    }

    /// Stops the server; the same as dropping it.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

fn handle(shared: &Shared, request: &Request) -> Reply {
    lock(&shared.requests).push(request.clone());
    let custom = lock(&shared.handlers)
        .iter()
        .rev()
        .find(|(prefix, _)| request.path().starts_with(prefix.as_str()))
        .map(|(_, handler)| Arc::clone(handler));
    if let Some(handler) = custom {
        return handler(request);
    }
    let status = request
        .path()
        .strip_prefix("/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=999).contains(code))
        .unwrap_or(200);
    Reply::Respond(Response::json(status, &echo(request)))
}

/// The JSON echo of `request`.
pub fn echo(request: &Request) -> Value {
    let (body, encoding) = match core::str::from_utf8(&request.body) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (STANDARD.encode(&request.body), "base64"),
    };
    let headers: Vec<[&str; 2]> =
        request.headers.iter().map(|(name, value)| [name.as_str(), value.as_str()]).collect();
    json!({
        "method": request.method,
        "path": request.path(),
        "query": request.query(),
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
        "bearer_claims": request.bearer_token().and_then(jwt_payload).unwrap_or(Value::Null),
    })
}

/// The decoded (unverified) payload of a compact JWS, if `token` is one.
pub fn jwt_payload(token: &str) -> Option<Value> {
    let mut segments = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

/// A `text/event-stream` reply sending each event (as `data:` lines)
/// `gap` apart over chunked encoding.
pub fn sse_reply(events: &[&str], gap: Duration) -> Reply {
    let chunks = events
        .iter()
        .map(|event| {
            let data: String = event.lines().map(|line| format!("data: {line}\n")).collect();
            (gap, format!("{data}\n").into_bytes())
        })
        .collect();
    Reply::Chunked(
        Response::new(200, "text/event-stream", Vec::new()).with_header("cache-control", "no-cache"),
        chunks,
    )
}
