//! A thread-per-connection HTTP/1.1 server with keep-alive.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::panic;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::request::Request;
use crate::response::{Reply, Response, reason_phrase};
use crate::wire::{self, MAX_BODY_BYTES, WireError};

/// The request handler a [`Server`] calls for every request.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// How often blocked reads and delays look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// An idle keep-alive connection (or a stalled request) is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server. Dropping it (or calling [`Server::shutdown`]) stops
/// accepting, closes open connections and joins every thread it started.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

struct Shared {
    stop: AtomicBool,
    handler: Handler,
    next_connection_id: AtomicU64,
    /// Clones of open connections, so shutdown can unblock their threads.
    open_streams: Mutex<HashMap<u64, TcpStream>>,
    connection_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Binds exactly `addr` (e.g. `"127.0.0.1:0"`) and starts serving.
    pub fn start(addr: &str, handler: Handler) -> io::Result<Server> {
        Self::from_listener(TcpListener::bind(addr)?, handler)
    }

    /// Serves on an already bound listener, for callers that need the port
    /// before the handler exists (e.g. an issuer URL containing it).
    pub fn from_listener(listener: TcpListener, handler: Handler) -> io::Result<Server> {
        listener.set_nonblocking(false)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            handler,
            next_connection_id: AtomicU64::new(0),
            open_streams: Mutex::new(HashMap::new()),
            connection_threads: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("http-kit-accept-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(Server { addr, shared, accept_thread: Some(accept_thread) })
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
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(); a connection wakes it up.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        let _ = accept_thread.join();
        for stream in lock(&self.shared.open_streams).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = core::mem::take(&mut *lock(&self.shared.connection_threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking handler must not take the whole server down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where to connect to reach a listener bound to `addr`.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(_) => {
                // Typically EMFILE or a connection reset before accept; back off.
                thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        let _ = spawn_connection(stream, shared);
    }
}

fn spawn_connection(stream: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let id = shared.next_connection_id.fetch_add(1, Ordering::SeqCst);
    lock(&shared.open_streams).insert(id, stream.try_clone()?);
    let connection_shared = Arc::clone(shared);
    let spawned = thread::Builder::new().name(format!("http-kit-conn-{id}")).spawn(move || {
        let _ = serve_connection(stream, &connection_shared);
        lock(&connection_shared.open_streams).remove(&id);
    });
    match spawned {
        Ok(handle) => {
            let mut threads = lock(&shared.connection_threads);
            threads.retain(|thread| !thread.is_finished());
            threads.push(handle);
            Ok(())
        }
        Err(error) => {
            lock(&shared.open_streams).remove(&id);
            Err(error)
        }
    }
}

/// Reads from a socket with a short timeout so the thread notices a stop
/// request, and gives up after `IDLE_TIMEOUT` without progress.
struct StopAwareReader<'a> {
    stream: TcpStream,
    stop: &'a AtomicBool,
}

impl Read for StopAwareReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                // Not `Interrupted`: `BufRead::read_until` retries those, so
                // a connection thread mid-line would spin forever and the
                // server's drop would wait for it.
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "server stopping"));
            }
            match self.stream.read(buf) {
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if started.elapsed() >= IDLE_TIMEOUT {
                        return Err(error);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(StopAwareReader { stream, stop: &shared.stop });
    loop {
        let (request, keep_alive) = match read_request(&mut reader, &mut writer, peer) {
            Ok(parsed) => parsed,
            Err(WireError::Closed | WireError::Io(_)) => return Ok(()),
            Err(error) => {
                let (status, message) = match error {
                    WireError::HeadTooLarge => (431, "header block too large".to_string()),
                    WireError::BodyTooLarge => (413, "request body too large".to_string()),
                    WireError::Malformed(what) => (400, what.to_string()),
                    WireError::Closed | WireError::Io(_) => (400, String::new()),
                };
                let response = Response::text(status, &message);
                write_response(&mut writer, &response, false, false)?;
                linger(&writer, reader.get_mut());
                return Ok(());
            }
        };
        // A panicking handler (a failed assertion in a test's handler) must
        // still answer, or the client would wait for its timeout.
        let handled = panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(&request)));
        let Ok(reply) = handled else {
            let response = Response::text(500, "handler panicked");
            return write_response(&mut writer, &response, false, false);
        };
        let is_head = request.method.eq_ignore_ascii_case("HEAD");
        if !send_reply(&mut writer, reply, is_head, keep_alive, &shared.stop)? {
            return Ok(());
        }
    }
}

/// Closing with unread request bytes makes the kernel send a reset, which
/// can destroy the error response before the client reads it. So half-close,
/// then discard what the client is still sending, for a bounded time.
fn linger(writer: &TcpStream, reader: &mut StopAwareReader<'_>) {
    const LINGER_TIME: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 16 * 1024 * 1024;
    let _ = writer.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline && discarded < LINGER_BYTES {
        match reader.stream.read(&mut buf) {
            Ok(0) => return,
            Ok(read) => discarded += read,
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn read_request(
    reader: &mut impl std::io::BufRead,
    writer: &mut TcpStream,
    peer: SocketAddr,
) -> Result<(Request, bool), WireError> {
    let head = wire::read_head(reader)?;
    let mut parts = head.start_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WireError::Malformed("malformed request line"));
    };
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(WireError::Malformed("malformed request line"));
    }
    let framing = wire::request_framing(&head.headers)?;
    let expects_continue =
        wire::header_values(&head.headers, "expect").any(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue && framing != wire::BodyFraming::Empty {
        if let wire::BodyFraming::Length(length) = framing
            && length > MAX_BODY_BYTES
        {
            return Err(WireError::BodyTooLarge);
        }
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = wire::read_body(reader, framing, MAX_BODY_BYTES)?;
    let request =
        Request { method: method.to_string(), target: target.to_string(), headers: head.headers, body, peer };
    // HTTP/1.1 defaults to keep-alive, HTTP/1.0 to close (RFC 9112 §9.3).
    let keep_alive = if version == "HTTP/1.0" {
        has_connection_token(&request, "keep-alive")
    } else {
        !has_connection_token(&request, "close")
    };
    Ok((request, keep_alive))
}

fn has_connection_token(request: &Request, token: &str) -> bool {
    request
        .header_all("connection")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Sends a reply; returns whether the connection may serve another request.
fn send_reply(
    writer: &mut TcpStream,
    reply: Reply,
    is_head: bool,
    keep_alive: bool,
    stop: &AtomicBool,
) -> io::Result<bool> {
    match reply {
        Reply::Respond(response) => {
            write_response(writer, &response, keep_alive, is_head)?;
            Ok(keep_alive)
        }
        Reply::Delayed(delay, response) => {
            if !sleep_unless_stopped(delay, stop) {
                return Ok(false);
            }
            write_response(writer, &response, keep_alive, is_head)?;
            Ok(keep_alive)
        }
        Reply::Close => Ok(false),
        Reply::Truncated(response) => {
            let mut head = response.clone();
            head.body.clear();
            if head.header("content-length").is_none() {
                head.headers.push(("content-length".to_string(), response.body.len().to_string()));
            }
            write_response(writer, &head, false, true)?;
            writer.write_all(&response.body[..response.body.len() / 2])?;
            writer.flush()?;
            Ok(false)
        }
        Reply::Raw(bytes) => {
            writer.write_all(&bytes)?;
            writer.flush()?;
            Ok(false)
        }
        Reply::Chunked(response, chunks) => {
            let mut head = response.clone();
            head.body.clear();
            head.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
            head.headers.push(("transfer-encoding".to_string(), "chunked".to_string()));
            write_head(writer, &head, keep_alive)?;
            if is_head {
                return Ok(keep_alive);
            }
            write_chunk(writer, &response.body)?;
            for (delay, chunk) in chunks {
                if !sleep_unless_stopped(delay, stop) {
                    return Ok(false);
                }
                write_chunk(writer, &chunk)?;
            }
            writer.write_all(b"0\r\n\r\n")?;
            writer.flush()?;
            Ok(keep_alive)
        }
    }
}

fn write_chunk(writer: &mut TcpStream, chunk: &[u8]) -> io::Result<()> {
    // A zero-length chunk would end the body early.
    if chunk.is_empty() {
        return Ok(());
    }
    writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
    writer.write_all(chunk)?;
    writer.write_all(b"\r\n")?;
    writer.flush()
}

/// Sleeps in short steps; false when the server was asked to stop.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

fn write_head(writer: &mut TcpStream, response: &Response, keep_alive: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive && response.header("connection").is_none() {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())
}

fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    omit_body: bool,
) -> io::Result<()> {
    let bodiless_status = response.status < 200 || response.status == 204 || response.status == 304;
    let mut response = response.clone();
    if !bodiless_status && response.header("content-length").is_none() {
        response.headers.push(("content-length".to_string(), response.body.len().to_string()));
    }
    write_head(writer, &response, keep_alive)?;
    if !omit_body && !bodiless_status {
        writer.write_all(&response.body)?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    /// A connection thread stopped mid-line must give up, not spin: line
    /// reads retry `Interrupted` errors forever.
    #[test]
    fn a_stopped_reader_ends_a_line_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(POLL_INTERVAL)).unwrap();
        client.write_all(b"GET / HT").unwrap();
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            static STOP: AtomicBool = AtomicBool::new(false);
            let mut reader = BufReader::new(StopAwareReader { stream, stop: &STOP });
            let mut line = Vec::new();
            // The first bytes arrive, then the server stops mid-line.
            let _ = reader.fill_buf();
            STOP.store(true, Ordering::SeqCst);
            let result = reader.read_until(b'\n', &mut line);
            let _ = done.send(result.map_err(|e| e.kind()));
        });
        let result = finished.recv_timeout(Duration::from_secs(2)).expect("the read gave up");
        assert_eq!(result, Err(io::ErrorKind::ConnectionAborted));
        drop(client);
    }
}
