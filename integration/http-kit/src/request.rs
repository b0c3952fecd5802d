//! A request as received by [`crate::Server`].

use core::net::SocketAddr;

use crate::encoding::parse_urlencoded;
use crate::header_values;

/// An HTTP request exactly as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method as sent (case preserved).
    pub method: String,
    /// Request target as received: path plus optional `?query`.
    pub target: String,
    /// Header fields with lowercased names; order and duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked coding removed).
    pub body: Vec<u8>,
    /// Address of the connecting peer.
    pub peer: SocketAddr,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    /// Decoded query parameters, duplicates kept in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        self.query().map(parse_urlencoded).unwrap_or_default()
    }

    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        first_named(self.query_params(), name)
    }

    /// The body decoded as `application/x-www-form-urlencoded`, duplicates
    /// kept in order. The Content-Type is not checked here.
    pub fn form_params(&self) -> Vec<(String, String)> {
        parse_urlencoded(&String::from_utf8_lossy(&self.body))
    }

    /// The body as UTF-8, with invalid sequences replaced.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The token of an `Authorization: Bearer <token>` header, if present.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
    }
}

fn first_named(params: Vec<(String, String)>, name: &str) -> Option<String> {
    params.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: "POST".to_string(),
            target: target.to_string(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    #[test]
    fn path_query_and_params() {
        let req = request("/a/b?x=1&y=%20z&x=2", &[], "");
        assert_eq!(req.path(), "/a/b");
        assert_eq!(req.query(), Some("x=1&y=%20z&x=2"));
        assert_eq!(req.query_params().len(), 3);
        assert_eq!(req.query_param("y").as_deref(), Some(" z"));
        assert_eq!(request("/only", &[], "").query(), None);
    }

    #[test]
    fn headers_form_and_bearer() {
        let req = request("/", &[("authorization", "bearer  abc"), ("x", "1"), ("x", "2")], "a=b+c&a=d");
        assert_eq!(req.header("X"), Some("1"));
        assert_eq!(req.header_all("x"), vec!["1", "2"]);
        assert_eq!(req.bearer_token(), Some("abc"));
        assert_eq!(
            req.form_params(),
            vec![("a".to_string(), "b c".to_string()), ("a".to_string(), "d".to_string())]
        );
    }
}
