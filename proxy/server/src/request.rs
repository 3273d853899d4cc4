//! A client request as the proxy keeps it while it is in flight, and as it is sent on:
//! the path normalised as the upstream will route it, the headers cleaned (hop-by-hop
//! headers, a client's own `x-shadow`), a request id, and the rule it matched.

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request};
use proxy_routing::PathNormalization;
use proxy_routing::path::normalize;

use crate::forward::{self, ProxyBody};

/// A request's facts the proxy keeps while it is in flight.
pub struct Inbound {
    pub method: Method,
    /// The path (normalised) and query, as forwarded.
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub request_id: String,
    /// When the request came in.
    pub received: std::time::Instant,
    /// The request's span, when traces are on (`trace`).
    pub trace: Option<opentelemetry::Context>,
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request's path and query with the path normalised in `mode` (the query as it
/// came). Unchanged paths are not copied.
pub fn normalized_target(uri: &http::Uri, mode: PathNormalization) -> PathAndQuery {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match normalize(original.path(), mode) {
        Cow::Borrowed(_) => original,
        Cow::Owned(path) => {
            let target = match original.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            // Normalising only removes characters or decodes unreserved ones: what
            // parsed before parses now.
            target.parse().unwrap_or(original)
        }
    }
}

/// The client's headers made fit to forward: no dry-run mark (only the proxy's own
/// replays carry one), no hop-by-hop headers, and a request id (the client's, if sane).
pub fn clean_headers(headers: &mut HeaderMap) -> String {
    headers.remove("x-shadow");
    forward::strip_hop_by_hop(headers);
    let id = request_id(headers);
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    id
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        .unwrap_or_else(|| member_contract::headers::new_request_id(trace_random()))
}

/// 16 bytes for a request id: unique, not secret (a trace id is no credential), so
/// drawn from a per-thread xorshift generator seeded once from the OS, not from a
/// system call per request.
fn trace_random() -> [u8; 16] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let mut seed = [0u8; 16];
            let _ = getrandom::fill(&mut seed);
            let (a, b) = seed.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap_or([1; 8]));
            let b = u64::from_le_bytes(b.try_into().unwrap_or([2; 8]));
            (a | 1, b | 1)
        });
    }
    STATE.with(|state| {
        // xorshift128+, twice: 128 bits.
        let (mut s0, mut s1) = state.get();
        let mut out = [0u8; 16];
        for half in out.chunks_mut(8) {
            let mut x = s0;
            let y = s1;
            s0 = y;
            x ^= x << 23;
            s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
            half.copy_from_slice(&s1.wrapping_add(y).to_le_bytes());
        }
        state.set((s0, s1));
        out
    })
}

/// The upstream request: the client's method, path, query and headers, and a body.
pub fn build_request(
    inbound: &Inbound,
    body: ProxyBody,
    shadow_mark: Option<&'static str>,
) -> Request<ProxyBody> {
    let mut req = Request::new(body);
    *req.method_mut() = inbound.method.clone();
    *req.uri_mut() = http::Uri::from(inbound.path_and_query.clone());
    *req.headers_mut() = inbound.headers.clone();
    req.headers_mut().remove(http::header::HOST);
    if let Some(mark) = shadow_mark {
        req.headers_mut()
            .insert("x-shadow", HeaderValue::from_static(mark));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_keeps_its_query_and_is_copied_only_when_it_changes() {
        let uri: http::Uri = "//api/v1//users/./me?ids=1,2&x=%2F".parse().unwrap();
        let target = normalized_target(&uri, PathNormalization::MergeSlashes);
        assert_eq!(target.as_str(), "/api/v1/users/me?ids=1,2&x=%2F");
        let uri: http::Uri = "/api/v1/users?ids=1".parse().unwrap();
        assert_eq!(
            normalized_target(&uri, PathNormalization::MergeSlashes).as_str(),
            "/api/v1/users?ids=1"
        );
        assert_eq!(
            normalized_target(&"//x".parse().unwrap(), PathNormalization::None).as_str(),
            "//x"
        );
    }

    #[test]
    fn a_client_cannot_mark_its_request_a_dry_run() {
        let mut headers = HeaderMap::new();
        headers.insert("x-shadow", HeaderValue::from_static("dry-run"));
        headers.insert("connection", HeaderValue::from_static("close"));
        let id = clean_headers(&mut headers);
        assert!(headers.get("x-shadow").is_none() && headers.get("connection").is_none());
        assert_eq!(headers["x-request-id"], id.as_str());
    }
}
