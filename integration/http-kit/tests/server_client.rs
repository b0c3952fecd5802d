//! Round trips through a real `Server` on 127.0.0.1 with the crate's client.
// Helpers outside #[test] functions fail loudly too: they are test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::time::Duration;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_kit::{ClientRequest, Reply, Request, Response, Server, send, send_raw};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A server answering every request with a JSON echo of what it received.
fn echo_server() -> Server {
    Server::start(
        "127.0.0.1:0",
        Arc::new(|req: &Request| {
            Reply::Respond(Response::json(
                200,
                &json!({
                    "method": req.method,
                    "target": req.target,
                    "headers": req.headers,
                    "body": req.body_str(),
                    "peer_is_loopback": req.peer.ip().is_loopback(),
                }),
            ))
        }),
    )
    .unwrap()
}

fn server_with(reply: Reply) -> Server {
    Server::start("127.0.0.1:0", Arc::new(move |_: &Request| reply.clone())).unwrap()
}

#[test]
fn round_trip_preserves_method_target_and_body() {
    let server = echo_server();
    let req = ClientRequest::post("/path/x?a=1&a=2", "text/plain", "hello");
    let resp = send(server.addr(), &req, TIMEOUT).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    let body = resp.json().unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["target"], "/path/x?a=1&a=2");
    assert_eq!(body["body"], "hello");
    assert_eq!(body["peer_is_loopback"], true);
    assert!(server.port() > 0);
}

#[test]
fn duplicate_and_oddly_cased_headers_are_preserved_in_order() {
    let server = echo_server();
    let req = ClientRequest::get("/")
        .header("X-Dup", "one")
        .header("x-DUP", "two")
        .header("Authorization", "Bearer a")
        .header("authorization", "Bearer b");
    let bytes = req.to_bytes(server.addr());
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("X-Dup: one\r\nx-DUP: two\r\n"), "{text}");
    let body = send(server.addr(), &req, TIMEOUT).unwrap().json().unwrap();
    let headers: Vec<(String, String)> = serde_json::from_value(body["headers"].clone()).unwrap();
    let named: Vec<&(String, String)> =
        headers.iter().filter(|(n, _)| n == "x-dup" || n == "authorization").collect();
    assert_eq!(
        named,
        vec![
            &("x-dup".to_string(), "one".to_string()),
            &("x-dup".to_string(), "two".to_string()),
            &("authorization".to_string(), "Bearer a".to_string()),
            &("authorization".to_string(), "Bearer b".to_string()),
        ]
    );
}

#[test]
fn host_is_added_only_when_absent() {
    let server = echo_server();
    let with_host = ClientRequest::get("/").header("HOST", "example.test");
    let text = String::from_utf8(with_host.to_bytes(server.addr())).unwrap();
    assert_eq!(text.to_ascii_lowercase().matches("host:").count(), 1, "{text}");
    let body = send(server.addr(), &with_host, TIMEOUT).unwrap().json().unwrap();
    assert!(body["headers"].to_string().contains("example.test"));
}

#[test]
fn chunked_request_body_is_decoded() {
    let server = echo_server();
    let req = ClientRequest::post("/", "text/plain", "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n")
        .header("Transfer-Encoding", "chunked");
    let body = send(server.addr(), &req, TIMEOUT).unwrap().json().unwrap();
    assert_eq!(body["body"], "Wikipedia");
}

#[test]
fn chunked_response_is_decoded_by_the_client() {
    let server = server_with(Reply::Chunked(
        Response::new(200, "text/event-stream", "data: 1\n\n"),
        vec![(Duration::from_millis(20), b"data: 2\n\n".to_vec()), (Duration::ZERO, b"data: 3\n\n".to_vec())],
    ));
    let resp = send(server.addr(), &ClientRequest::get("/"), TIMEOUT).unwrap();
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.body_str(), "data: 1\n\ndata: 2\n\ndata: 3\n\n");
}

/// Reads one content-length framed response from a raw keep-alive stream.
fn read_one_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let server = echo_server();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, body) = read_one_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 200"));
    assert!(body.contains("/first"));
    stream
        .write_all(b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .unwrap();
    let (status, body) = read_one_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 200"));
    assert!(body.contains("/second") && body.contains("\"hi\""));
    // After `Connection: close` the server closes its side.
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn delayed_reply_waits_before_answering() {
    let server = server_with(Reply::Delayed(Duration::from_millis(300), Response::text(202, "late")));
    let started = Instant::now();
    let resp = send(server.addr(), &ClientRequest::get("/"), TIMEOUT).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((resp.status, resp.body_str().as_str()), (202, "late"));
}

#[test]
fn close_reply_drops_the_connection_without_answer() {
    let server = server_with(Reply::Close);
    let err = send(server.addr(), &ClientRequest::get("/"), TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn truncated_reply_sends_half_the_body_then_closes() {
    let server = server_with(Reply::Truncated(Response::text(200, "0123456789")));
    let err = send(server.addr(), &ClientRequest::get("/"), TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.contains("content-length: 10\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n01234"), "{raw}");
}

#[test]
fn raw_reply_is_written_verbatim() {
    let server =
        server_with(Reply::Raw(b"HTTP/1.1 299 Odd\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\nuntil close".to_vec()));
    let resp = send(server.addr(), &ClientRequest::get("/"), TIMEOUT).unwrap();
    assert_eq!(resp.status, 299);
    assert_eq!(resp.header_all("X-THING"), vec!["1", "2"]);
    assert_eq!(resp.body_str(), "until close");
}

#[test]
fn head_requests_get_no_body() {
    let server = server_with(Reply::Respond(Response::text(200, "body")));
    let resp = send(server.addr(), &ClientRequest::new("HEAD", "/"), TIMEOUT).unwrap();
    assert_eq!(resp.header("content-length"), Some("4"));
    assert!(resp.body.is_empty());
}

#[test]
fn malformed_requests_get_400() {
    let server = echo_server();
    let resp = send_raw(server.addr(), b"NONSENSE\r\n\r\n", TIMEOUT).unwrap();
    assert_eq!(resp.status, 400);
    let resp = send_raw(
        server.addr(),
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(resp.status, 400);
}

#[test]
fn oversized_head_and_body_are_refused() {
    let server = echo_server();
    let big_header = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(70 * 1024));
    let resp = send_raw(server.addr(), big_header.as_bytes(), TIMEOUT).unwrap();
    assert_eq!(resp.status, 431);
    let resp =
        send_raw(server.addr(), b"POST / HTTP/1.1\r\nContent-Length: 9000000\r\n\r\n", TIMEOUT).unwrap();
    assert_eq!(resp.status, 413);
}

#[test]
fn shutdown_is_prompt_even_with_open_and_delayed_connections() {
    let seen = Arc::new(Mutex::new(0));
    let seen_in_handler = Arc::clone(&seen);
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(move |_: &Request| {
            *seen_in_handler.lock().unwrap() += 1;
            Reply::Delayed(Duration::from_secs(30), Response::empty(204))
        }),
    )
    .unwrap();
    let addr = server.addr();
    let _idle = TcpStream::connect(addr).unwrap();
    let mut busy = TcpStream::connect(addr).unwrap();
    busy.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    while *seen.lock().unwrap() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let server = Server::start(
        "127.0.0.1:0",
        Arc::new(|req: &Request| {
            assert_ne!(req.path(), "/boom", "deliberate test panic");
            Reply::Respond(Response::empty(204))
        }),
    )
    .unwrap();
    let boom = send(server.addr(), &ClientRequest::get("/boom"), TIMEOUT).unwrap();
    assert_eq!(boom.status, 500);
    let fine = send(server.addr(), &ClientRequest::get("/fine"), TIMEOUT).unwrap();
    assert_eq!(fine.status, 204);
}

#[test]
fn a_too_large_body_still_gets_its_413_while_the_client_is_sending() {
    let server = echo_server();
    let body = vec![b'a'; 9 * 1024 * 1024];
    let resp = send(server.addr(), &ClientRequest::post("/", "text/plain", body), TIMEOUT).unwrap();
    assert_eq!(resp.status, 413);
}
