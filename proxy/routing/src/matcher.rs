//! Compiled `match` conditions of a rule, checked against each request: `uri` on the
//! path (query string excluded), `method`, `headers` and `withoutHeaders`.
//!
//! Istio's semantics: `exact` compares the whole value, `prefix` its start (a plain
//! string prefix: `/api/v1/users` also matches `/api/v1/users-export`), and `regex` is
//! an RE2 expression that must match the *whole* value, as Envoy's `safe_regex` does:
//! `/api/v1/users/[0-9]+` matches `/api/v1/users/42` but not `/api/v1/users/42/x`.
//! Rust's `regex` crate reads RE2 syntax (no look-around, no back-references).
//! Header names are case-insensitive; several values of one header are matched as one
//! comma-separated value, as Envoy joins them.

use http::{HeaderMap, HeaderName};
use regex::{Regex, RegexBuilder};

use crate::virtual_service::{HttpMatchRequest, StringMatch};
use crate::{Location, RoutingError};

/// Compiled regexes are limited to this size, so that a hostile or mistaken pattern
/// cannot stall a reload (Envoy limits program size for the same reason).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One compiled `StringMatch`.
#[derive(Debug, Clone)]
pub(crate) enum StringMatcher {
    /// `{}`: anything.
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl StringMatcher {
    /// Compiles `spec`, found at `field` of the rule at `at`.
    pub(crate) fn compile(
        spec: &StringMatch,
        at: &Location,
        field: &str,
    ) -> Result<Self, RoutingError> {
        match (&spec.exact, &spec.prefix, &spec.regex) {
            (None, None, None) => Ok(StringMatcher::Any),
            (Some(exact), None, None) => Ok(StringMatcher::Exact(exact.clone())),
            (None, Some(prefix), None) => Ok(StringMatcher::Prefix(prefix.clone())),
            (None, None, Some(regex)) => {
                let build = |pattern: &str| {
                    RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|error| {
                            let reason = error.to_string().replace('\n', " ");
                            RoutingError::invalid(
                                at,
                                format!("{field}.regex"),
                                format!("is not a valid RE2 expression ({regex:?}): {reason}"),
                            )
                        })
                };
                // Compiled alone first: only a pattern that stands on its own can be
                // wrapped in an anchored group without changing its meaning.
                build(regex)?;
                Ok(StringMatcher::Regex(build(&format!("^(?:{regex})$"))?))
            }
            _ => Err(RoutingError::invalid(
                at,
                field,
                "sets more than one of `exact`, `prefix` and `regex`",
            )),
        }
    }

    /// Whether `value` matches; `ignore_case` applies to `exact` and `prefix` only.
    pub(crate) fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            StringMatcher::Any => true,
            StringMatcher::Exact(exact) if ignore_case => value.eq_ignore_ascii_case(exact),
            StringMatcher::Exact(exact) => value == exact,
            StringMatcher::Prefix(prefix) if ignore_case => value
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes())),
            StringMatcher::Prefix(prefix) => value.starts_with(prefix.as_str()),
            StringMatcher::Regex(regex) => regex.is_match(value),
        }
    }
}

/// One compiled entry of a rule's `match`: every condition must hold.
#[derive(Debug, Clone)]
pub(crate) struct MatchEntry {
    uri: StringMatcher,
    ignore_uri_case: bool,
    method: StringMatcher,
    headers: Vec<(HeaderName, StringMatcher)>,
    without_headers: Vec<(HeaderName, StringMatcher)>,
}

impl MatchEntry {
    /// Compiles `match[index]` of the rule at `at`.
    pub(crate) fn compile(
        spec: &HttpMatchRequest,
        at: &Location,
        index: usize,
    ) -> Result<Self, RoutingError> {
        let field = |name: &str| format!("match[{index}].{name}");
        let optional = |spec: &Option<StringMatch>, name: &str| match spec {
            Some(spec) => StringMatcher::compile(spec, at, &field(name)),
            None => Ok(StringMatcher::Any),
        };
        let headers = |specs: &std::collections::BTreeMap<String, StringMatch>, name: &str| {
            specs
                .iter()
                .map(|(header, spec)| {
                    let header_field = format!("{}.{header}", field(name));
                    let header_name = HeaderName::from_bytes(
                        header.to_ascii_lowercase().as_bytes(),
                    )
                    .map_err(|_| {
                        RoutingError::invalid(
                            at,
                            header_field.clone(),
                            "is not a valid header name",
                        )
                    })?;
                    Ok((
                        header_name,
                        StringMatcher::compile(spec, at, &header_field)?,
                    ))
                })
                .collect::<Result<Vec<_>, RoutingError>>()
        };
        Ok(MatchEntry {
            uri: optional(&spec.uri, "uri")?,
            ignore_uri_case: spec.ignore_uri_case,
            method: optional(&spec.method, "method")?,
            headers: headers(&spec.headers, "headers")?,
            without_headers: headers(&spec.without_headers, "withoutHeaders")?,
        })
    }

    /// Whether a request matches every condition of this entry.
    pub(crate) fn matches(&self, method: &str, path: &str, headers: &HeaderMap) -> bool {
        self.uri.matches(path, self.ignore_uri_case)
            && self.method.matches(method, false)
            && self
                .headers
                .iter()
                .all(|(name, matcher)| header_matches(headers, name, matcher))
            && !self
                .without_headers
                .iter()
                .any(|(name, matcher)| header_matches(headers, name, matcher))
    }
}

/// Whether header `name` is present and its (joined) value matches; an empty match
/// asks for presence only. A value that is not text matches nothing but presence.
fn header_matches(headers: &HeaderMap, name: &HeaderName, matcher: &StringMatcher) -> bool {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return false;
    }
    if matches!(matcher, StringMatcher::Any) {
        return true;
    }
    let mut joined = String::new();
    for (index, value) in values.enumerate() {
        let Ok(text) = value.to_str() else {
            return false;
        };
        if index > 0 {
            joined.push(',');
        }
        joined.push_str(text);
    }
    matcher.matches(&joined, false)
}
