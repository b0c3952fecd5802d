//! An HTTP/2 client (h2c with prior knowledge, as Envoy's `AUTO` codec
//! accepts) for requests whose body ends with trailers, which HTTP/1.1
//! clients cannot send to Envoy by default.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

/// An answer: status, headers and body.
#[derive(Debug)]
pub struct H2Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `POST path` to `addr` over h2c with `headers`, `body` in one DATA frame
/// (not ending the stream), then `trailers` ending it.
pub fn post_with_trailers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
    timeout: Duration,
) -> Result<H2Response, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(timeout, exchange(addr, path, headers, body, trailers))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    })
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
) -> Result<H2Response, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| format!("ready: {e}"))?;
    let mut request = http::Request::builder().method("POST").uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).map_err(|e| format!("request: {e}"))?;
    let (response, mut stream) = client.send_request(request, false).map_err(|e| format!("send: {e}"))?;
    stream.send_data(Bytes::copy_from_slice(body), false).map_err(|e| format!("data: {e}"))?;
    let mut trailer_map = http::HeaderMap::new();
    for (name, value) in trailers {
        let name =
            http::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("trailer: {e}"))?;
        let value = http::header::HeaderValue::from_str(value).map_err(|e| format!("trailer: {e}"))?;
        trailer_map.append(name, value);
    }
    stream.send_trailers(trailer_map).map_err(|e| format!("trailers: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let mut body = Vec::new();
    let mut incoming = response.into_body();
    while let Some(chunk) = incoming.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = incoming.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(H2Response { status, headers, body })
}
