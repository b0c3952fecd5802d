//! The server: hyper's HTTP/1.1 connection on a tokio runtime it owns.

use core::convert::Infallible;
use core::net::SocketAddr;
use core::time::Duration;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use crate::request::Request;
use crate::response::{Reply, Response, reason_phrase};
use crate::{MAX_BODY_BYTES, MAX_HEAD_BYTES};

/// The request handler a [`Server`] calls for every request. It runs on the
/// server's blocking pool, so it may block.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

type Body = BoxBody<Bytes, Infallible>;

/// Most header fields a request may have (hyper's default is 100).
const MAX_HEADERS: usize = 1000;
/// How long stopping waits for handlers still running.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A running server. Dropping it (or calling [`Server::shutdown`]) stops
/// accepting and closes open connections, after waiting up to a second for
/// handlers still running. Drop it from blocking code: tokio refuses to shut
/// a runtime down from inside async code.
pub struct Server {
    addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds exactly `addr` (e.g. `"127.0.0.1:0"`) and starts serving.
    pub fn start(addr: &str, handler: Handler) -> io::Result<Server> {
        Self::from_listener(TcpListener::bind(addr)?, handler)
    }

    /// Serves on an already bound listener, for callers that need the port
    /// before the handler exists (e.g. an issuer URL containing it).
    pub fn from_listener(listener: TcpListener, handler: Handler) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("http-kit-{}", addr.port()))
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(accept_loop(listener, handler));
        Ok(Server { addr, runtime: Some(runtime) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server; the same as dropping it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Drops the accept loop (closing the listener) and every connection.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => drop(tokio::spawn(serve_connection(stream, peer, Arc::clone(&handler)))),
            // Typically EMFILE or a connection reset before accept; back off.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A reply hyper cannot send (it would not close without answering, nor
/// send a body shorter than its length): the service fails with these bytes,
/// hyper gives the connection up without writing, and they go out as they are.
#[derive(Debug)]
struct Takeover(Vec<u8>);

impl core::fmt::Display for Takeover {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the reply is written raw ({} bytes)", self.0.len())
    }
}

impl std::error::Error for Takeover {}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, handler: Handler) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(|request| respond(request, peer, Arc::clone(&handler)));
    let served = http1::Builder::new()
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(&mut stream), service)
        .await;
    let raw = served.as_ref().err().and_then(std::error::Error::source).and_then(|e| e.downcast_ref());
    if let Some(Takeover(bytes)) = raw {
        let _ = stream.write_all(bytes).await;
    }
    linger(stream).await;
}

/// Closing with unread request bytes makes the kernel send a reset, which
/// can destroy a response (a 413, a 431) before the client reads it. So
/// half-close, then discard what the client is still sending, for a
/// bounded time.
async fn linger(mut stream: TcpStream) {
    const LINGER_TIME: Duration = Duration::from_secs(2);
    const LINGER_BYTES: u64 = 16 * 1024 * 1024;
    let _ = stream.shutdown().await;
    let (mut unread, mut sink) = (stream.take(LINGER_BYTES), tokio::io::sink());
    let _ = tokio::time::timeout(LINGER_TIME, tokio::io::copy(&mut unread, &mut sink)).await;
}

async fn respond(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    handler: Handler,
) -> Result<hyper::Response<Body>, Takeover> {
    let (parts, body) = request.into_parts();
    let too_large =
        || build(&Response::text(413, "request body too large").with_header("connection", "close"));
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Ok(too_large());
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(error) if error.is::<LengthLimitError>() => return Ok(too_large()),
        // The client went away inside the body.
        Err(_) => return Err(Takeover(Vec::new())),
    };
    let headers = parts.headers.iter();
    let request = Request {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: headers
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
        peer,
    };
    // A panicking handler (a failed assertion in a test's handler) must
    // still answer, or the client would wait for its timeout.
    let reply = tokio::task::spawn_blocking(move || handler(&request))
        .await
        .unwrap_or_else(|_| Reply::Respond(Response::text(500, "handler panicked")));
    match reply {
        Reply::Respond(response) => Ok(build(&response)),
        Reply::Delayed(delay, response) => {
            tokio::time::sleep(delay).await;
            Ok(build(&response))
        }
        Reply::Close => Err(Takeover(Vec::new())),
        Reply::Truncated(response) => Err(Takeover(truncated(&response))),
        Reply::Raw(bytes) => Err(Takeover(bytes)),
        Reply::Chunked(mut response, chunks) => {
            let (mut sender, body) = Channel::<Bytes>::new(1);
            // hyper skips empty chunks (one would end the body early).
            let first = core::mem::take(&mut response.body);
            tokio::spawn(async move {
                for (delay, chunk) in core::iter::once((Duration::ZERO, first)).chain(chunks) {
                    tokio::time::sleep(delay).await;
                    if sender.send_data(chunk.into()).await.is_err() {
                        return;
                    }
                }
            });
            response.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
            Ok(with_body(&response, body.boxed()))
        }
    }
}

/// `response` as hyper's, with `content-length` from its body.
fn build(response: &Response) -> hyper::Response<Body> {
    with_body(response, Full::new(Bytes::from(response.body.clone())).boxed())
}

fn with_body(response: &Response, body: Body) -> hyper::Response<Body> {
    let builder = hyper::Response::builder().status(response.status);
    let builder = response.headers.iter().fold(builder, |b, (name, value)| b.header(name, value));
    builder.body(body).unwrap_or_else(|error| {
        let mut invalid = hyper::Response::new(Full::from(format!("invalid response: {error}")).boxed());
        *invalid.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        invalid
    })
}

/// The head with the full content-length, then half the body.
fn truncated(response: &Response) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if response.header("content-length").is_none() {
        head.push_str(&format!("content-length: {}\r\n", response.body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body[..response.body.len() / 2]);
    bytes
}
