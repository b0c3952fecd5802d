//! A browser's walk through redirects, done by a program for the demo and
//! for tests that do not need a real browser: follows `Location` headers
//! across loopback servers, keeps each host's cookies the way a browser
//! would send them back, and lets the caller sign the user in at a mock
//! IdP on the way (the real-browser tests use [`crate::Browser`]).

use std::net::SocketAddr;
use std::time::Duration;

use http_kit::{ClientRequest, ClientResponse};

/// One request of the walk and its answer.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The URL requested.
    pub url: String,
    /// Its answer.
    pub response: ClientResponse,
}

/// Cookies by host (`127.0.0.1:port`), as a browser keeps them.
#[derive(Debug, Clone, Default)]
pub struct RedirectWalk {
    cookies: Vec<(String, String, String)>,
}

impl RedirectWalk {
    /// A walk with no cookies yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cookie for `host` (e.g. an IdP session).
    pub fn add_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.cookies.retain(|(h, n, _)| !(h == host && n == name));
        self.cookies.push((host.to_string(), name.to_string(), value.to_string()));
    }

    /// The `Cookie` header this walk sends to `host`.
    pub fn cookie_header(&self, host: &str) -> Option<String> {
        let pairs: Vec<String> =
            self.cookies.iter().filter(|(h, _, _)| h == host).map(|(_, n, v)| format!("{n}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Requests `url` and follows redirects (at most `max_hops`) until an
    /// answer that is not a redirect; `rewrite` may change each URL first
    /// (return it unchanged to follow it as is). Returns every hop.
    pub fn follow(
        &mut self,
        url: &str,
        max_hops: usize,
        mut rewrite: impl FnMut(&str) -> String,
    ) -> Result<Vec<Hop>, String> {
        let mut hops = Vec::new();
        let mut next = url.to_string();
        for _ in 0..max_hops {
            let url = rewrite(&next);
            let (host, target) = split_url(&url)?;
            let addr: SocketAddr = host.parse().map_err(|_| format!("{url}: not a loopback address"))?;
            let mut request = ClientRequest::get(target);
            if let Some(cookie) = self.cookie_header(host) {
                request = request.header("cookie", &cookie);
            }
            let response =
                http_kit::send(addr, &request, Duration::from_secs(10)).map_err(|e| format!("{url}: {e}"))?;
            for set in response.header_all("set-cookie") {
                if let Some((name, value)) = set.split(';').next().and_then(|pair| pair.split_once('=')) {
                    self.add_cookie(host, name.trim(), value.trim());
                }
            }
            let location =
                (response.status / 100 == 3).then(|| response.header("location").map(String::from)).flatten();
            hops.push(Hop { url: url.clone(), response });
            match location {
                Some(location) if location.starts_with('/') => next = format!("http://{host}{location}"),
                Some(location) => next = location,
                None => return Ok(hops),
            }
        }
        Err(format!("more than {max_hops} redirects from {url}"))
    }
}

/// `http://host:port/path?query` into `host:port` and `/path?query`.
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: not a plain-http loopback URL"))?;
    Ok(match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_target() {
        assert_eq!(split_url("http://127.0.0.1:9/a?b=c").unwrap(), ("127.0.0.1:9", "/a?b=c"));
        assert_eq!(split_url("http://127.0.0.1:9").unwrap(), ("127.0.0.1:9", "/"));
        assert!(split_url("https://bank.example/").is_err());
        let mut walk = RedirectWalk::new();
        walk.add_cookie("h:1", "a", "1");
        walk.add_cookie("h:1", "a", "2");
        walk.add_cookie("h:2", "b", "3");
        assert_eq!(walk.cookie_header("h:1").as_deref(), Some("a=2"));
        assert_eq!(walk.cookie_header("h:3"), None);
    }
}
