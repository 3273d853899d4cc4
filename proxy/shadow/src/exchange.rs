//! What the proxy hands to the comparison: one side's answer ([`Exchange`]), which side
//! answered ([`Side`]) and what the client asked ([`RequestMeta`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One of the two backends behind the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The legacy Rails API.
    Legacy,
    /// The new identity service.
    New,
}

impl Side {
    /// Both sides, legacy first.
    pub const ALL: [Side; 2] = [Side::Legacy, Side::New];

    /// The side that is not this one.
    pub fn other(self) -> Side {
        match self {
            Side::Legacy => Side::New,
            Side::New => Side::Legacy,
        }
    }

    /// A short stable name, suitable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Legacy => "legacy",
            Side::New => "new",
        }
    }

    /// 0 for the legacy, 1 for the new side: an index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Legacy => 0,
            Side::New => 1,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side's answer to one request, as the proxy buffered it.
///
/// Header names are lowercase (HTTP/2 style); a name may appear more than once. The
/// proxy buffers at most a bounded number of body bytes and sets `truncated` when the
/// answer was longer: such an answer is never compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as buffered (possibly cut, see `truncated`).
    pub body: Bytes,
    /// True when the body was longer than what the proxy buffered.
    pub truncated: bool,
}

impl Exchange {
    /// An answer with this status, no header and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// A JSON answer as the legacy renders it (`application/json; charset=utf-8`).
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
    }

    /// This answer with one more header (the name is lowercased).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// This answer with another body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The values of header `name` (lowercase), joined by `", "` as HTTP allows for
    /// repeated headers; `None` when absent.
    pub fn header_value(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first}, {second}");
                for v in values {
                    joined.push_str(", ");
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }

    /// True for 5xx answers.
    pub fn is_server_error(&self) -> bool {
        (500..600).contains(&self.status)
    }

    /// True for 4xx answers.
    pub fn is_client_error(&self) -> bool {
        (400..500).contains(&self.status)
    }
}

/// What the client asked, as far as the comparison needs it: the route (the proxy's
/// name for the endpoint, the key of every per-route figure), the method (writes are
/// compared under write rules), and the path and headers (shown, masked, in samples).
/// Request bodies are never given: they hold passwords.
#[derive(Clone, Copy, Debug)]
pub struct RequestMeta<'a> {
    /// The route, e.g. `GET /api/v1/users/:id`.
    pub route: &'a str,
    /// The HTTP method, uppercase.
    pub method: &'a str,
    /// The path and query as received; samples show it as a template.
    pub path: &'a str,
    /// Request headers, names lowercase; samples show only an allowed few.
    pub headers: &'a [(String, String)],
}

impl<'a> RequestMeta<'a> {
    /// A request without headers.
    pub fn new(route: &'a str, method: &'a str, path: &'a str) -> Self {
        Self {
            route,
            method,
            path,
            headers: &[],
        }
    }

    /// This request with these headers.
    pub fn with_headers(mut self, headers: &'a [(String, String)]) -> Self {
        self.headers = headers;
        self
    }

    /// True for methods without side effects (`GET`, `HEAD`, `OPTIONS`), which are
    /// replayed as they are; anything else is a write, replayed as a dry run.
    pub fn is_safe(&self) -> bool {
        matches!(self.method, "GET" | "HEAD" | "OPTIONS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined() {
        let e = Exchange::new(200)
            .header("Vary", "Accept")
            .header("vary", "Origin")
            .header("x-one", "1");
        assert_eq!(e.header_value("vary").unwrap(), "Accept, Origin");
        assert_eq!(e.header_value("x-one").unwrap(), "1");
        assert!(e.header_value("etag").is_none());
    }

    #[test]
    fn sides_and_methods() {
        assert_eq!(Side::Legacy.other(), Side::New);
        assert_eq!(Side::New.index(), 1);
        assert!(RequestMeta::new("r", "GET", "/").is_safe());
        assert!(!RequestMeta::new("r", "PATCH", "/").is_safe());
    }
}
