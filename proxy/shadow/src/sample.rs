//! Mismatch samples for the admin API: where the request went and what differed, with
//! nothing that could be a secret or personal data. Values appear only as their type
//! and size (json-diff's masked rendering), paths as templates (`/api/v1/users/:id`),
//! request headers only from an allowed list (never `authorization` or cookies), and
//! request bodies never. [`Samples`] keeps the most recent few per route.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::config::NEVER_SHOWN_HEADERS;
use crate::exchange::Side;

/// Longest request header value shown in a sample, in characters.
const MAX_HEADER_CHARS: usize = 100;

/// One mismatch as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaskedSample {
    /// The route.
    pub route: String,
    /// The method, or `OTHER` for one that is not a plain token.
    pub method: String,
    /// The request path as a template: numeric segments are `:id`, other segments that
    /// are not plain words `:param`, query values `:value`.
    pub path: String,
    /// Which side answered the client.
    pub primary: Side,
    /// The legacy's status.
    pub legacy_status: u16,
    /// The new side's status.
    pub new_status: u16,
    /// Request headers from the allowed list, values shortened.
    pub request_headers: Vec<(String, String)>,
    /// One masked line per difference, legacy on the left:
    /// `~ $.user.nickname: string(3) != string(5)`.
    pub differences: Vec<String>,
    /// True when there were more differences than listed.
    pub truncated: bool,
}

/// A request path as a template that shows its shape and none of its values:
/// `/api/v1/users/42?ids=1,2` → `/api/v1/users/:id?ids=:value`.
pub fn path_template(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment.is_empty() || is_word(segment) {
            out.push_str(segment);
        } else if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(":id");
        } else {
            out.push_str(":param");
        }
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            out.push_str(if is_word(name) { name } else { ":param" });
            out.push_str("=:value");
        }
    }
    out
}

/// Route words: `api`, `v1`, `users`, `me`, `refresh`, `profile_image`.
fn is_word(segment: &str) -> bool {
    let version = segment
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()));
    version
        || (segment.len() <= 24
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-'))
}

/// The method if it is a plain uppercase token, else `OTHER`.
pub(crate) fn safe_method(method: &str) -> String {
    if !method.is_empty() && method.len() <= 10 && method.bytes().all(|b| b.is_ascii_uppercase()) {
        method.to_owned()
    } else {
        "OTHER".to_owned()
    }
}

/// The request headers whose names are `allowed` (and never one of
/// [`NEVER_SHOWN_HEADERS`]), values cut to a bounded printable prefix.
pub(crate) fn safe_headers(
    headers: &[(String, String)],
    allowed: &[String],
) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
                && !NEVER_SHOWN_HEADERS
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|(name, value)| (name.to_ascii_lowercase(), shorten(value)))
        .collect()
}

/// A header value for display: printable ASCII only, at most [`MAX_HEADER_CHARS`].
pub(crate) fn shorten(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_HEADER_CHARS)
        .collect();
    if value.chars().count() > MAX_HEADER_CHARS {
        out.push('…');
    }
    out
}

/// The most recent samples of each route, bounded: at most `per_route` samples for
/// each of at most `max_routes` routes (samples of further routes are dropped).
/// Shareable between threads (a mutex inside; pushing is short).
#[derive(Debug)]
pub struct Samples {
    per_route: usize,
    max_routes: usize,
    routes: Mutex<HashMap<String, VecDeque<MaskedSample>>>,
}

impl Samples {
    /// An empty store.
    pub fn new(per_route: usize, max_routes: usize) -> Self {
        Self {
            per_route,
            max_routes,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `sample`, forgetting its route's oldest one if that route is full.
    /// Returns false when the sample was dropped (too many routes, or `per_route` 0).
    pub fn push(&self, sample: MaskedSample) -> bool {
        if self.per_route == 0 {
            return false;
        }
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if !routes.contains_key(&sample.route) && routes.len() >= self.max_routes {
            return false;
        }
        let ring = routes.entry(sample.route.clone()).or_default();
        if ring.len() == self.per_route {
            ring.pop_front();
        }
        ring.push_back(sample);
        true
    }

    /// The samples of `route`, most recent first.
    pub fn recent(&self, route: &str) -> Vec<MaskedSample> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes
            .get(route)
            .map(|ring| ring.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Every sample, by route name, most recent first within a route.
    pub fn all(&self) -> Vec<MaskedSample> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|name| routes[name].iter().rev().cloned())
            .collect()
    }

    /// How many samples are kept in all.
    pub fn len(&self) -> usize {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.values().map(VecDeque::len).sum()
    }

    /// True when no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(route: &str, n: u16) -> MaskedSample {
        MaskedSample {
            route: route.into(),
            method: "GET".into(),
            path: "/".into(),
            primary: Side::Legacy,
            legacy_status: 200,
            new_status: n,
            request_headers: Vec::new(),
            differences: Vec::new(),
            truncated: false,
        }
    }

    #[test]
    fn templates_hide_ids_values_and_odd_segments() {
        assert_eq!(path_template("/api/v1/users/42"), "/api/v1/users/:id");
        assert_eq!(
            path_template("/api/v1/users?ids=1,2,3"),
            "/api/v1/users?ids=:value"
        );
        assert_eq!(path_template("/api/v1/users/me"), "/api/v1/users/me");
        assert_eq!(
            path_template("/api/v1/users/bob@example.com"),
            "/api/v1/users/:param"
        );
        assert_eq!(path_template("/a?x@y=1&ok"), "/a?:param=:value&ok=:value");
        assert_eq!(
            path_template("/api/v1/sessions/refresh?"),
            "/api/v1/sessions/refresh"
        );
    }

    #[test]
    fn secrets_never_pass_the_header_filter() {
        let headers: Vec<(String, String)> = [
            ("authorization", "Bearer WQBNCg7T1oV5rnGpT5cLb4pY"),
            ("cookie", "s=1"),
            ("accept", "application/json"),
            ("x-email", "bob@example.com"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .to_vec();
        let allowed = ["authorization", "cookie", "accept"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            safe_headers(&headers, &allowed),
            vec![("accept".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(
            shorten(&"x".repeat(300)).chars().count(),
            MAX_HEADER_CHARS + 1
        );
        assert_eq!(safe_method("get"), "OTHER");
    }

    #[test]
    fn rings_are_bounded_per_route_and_in_routes() {
        let samples = Samples::new(2, 1);
        for n in 0..5 {
            assert!(samples.push(sample("a", n)));
        }
        assert!(!samples.push(sample("b", 0)));
        let recent: Vec<u16> = samples.recent("a").iter().map(|s| s.new_status).collect();
        assert_eq!(recent, [4, 3]);
        assert_eq!(samples.len(), 2);
        assert!(samples.recent("b").is_empty());
    }
}
