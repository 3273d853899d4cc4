//! The headers Rails sends around the contract's bodies, and the bodies of the answers
//! its exception handling produces. Two kinds of answer differ in every header:
//!
//! - rendered by a controller (2xx, 401, 404 member, 400 missing parameter, 422): the
//!   security headers, JSON content type, `Vary: Accept` (when negotiated), a weak
//!   `ETag` on 200/201 with `304` for a matching `If-None-Match`, `Cache-Control`,
//!   `X-Request-Id`, `X-Runtime`;
//! - produced by exception handling (no route, malformed body, crash): `text/html` and
//!   an empty body, or `{"status":N,"error":"..."}` when the client asked for JSON.

use sha2::{Digest, Sha256};

/// `Content-Type` of every rendered JSON body.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// What the request says about negotiation and caching.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub is_get: bool,
    pub accept: Option<String>,
    /// The path had a `.format` suffix, or the parameters a `format`.
    pub has_format: bool,
    pub if_none_match: Option<String>,
    pub request_id: String,
}

/// A response ready to send: status, headers in Rails' order, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-frame-options", "SAMEORIGIN"),
    ("x-xss-protection", "1; mode=block"),
    ("x-content-type-options", "nosniff"),
    ("x-download-options", "noopen"),
    ("x-permitted-cross-domain-policies", "none"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

/// Rails' `BROWSER_LIKE_ACCEPTS`: `*/*` inside a list.
fn browser_like(accept: &str) -> bool {
    let parts: Vec<&str> = accept.split(',').map(str::trim).collect();
    parts.len() > 1 && parts.contains(&"*/*")
}

/// The first media type of `Accept` after sorting by q (stable).
fn preferred_type(accept: &str) -> Option<String> {
    let mut types: Vec<(f32, usize, String)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .next()
                .unwrap_or(1.0);
            (!media.is_empty()).then_some((q, i, media))
        })
        .collect();
    types.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    types.into_iter().next().map(|t| t.2)
}

fn negotiates_json(facts: &RequestFacts) -> bool {
    match facts.accept.as_deref() {
        Some(a) if !a.trim().is_empty() && !browser_like(a) => {
            preferred_type(a).as_deref() == Some("application/json")
        }
        _ => false,
    }
}

/// Rack's weak ETag: the first 32 hex digits of the body's SHA-256.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

fn if_none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag)
}

/// A controller's answer: `body` is JSON text, or `None` for `head :no_content`.
pub fn render_controller(
    status: u16,
    body: Option<String>,
    facts: &RequestFacts,
    runtime: &str,
) -> Rendered {
    let body = body.map(String::into_bytes);
    let mut headers: Vec<(&'static str, String)> = SECURITY_HEADERS
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    let mut status = status;
    let mut send = body.clone().unwrap_or_default();
    if body.is_some() {
        headers.push(("content-type", JSON_CONTENT_TYPE.to_owned()));
        let accept = facts.accept.as_deref().unwrap_or("").trim();
        if !accept.is_empty() && !browser_like(accept) && !facts.has_format {
            headers.push(("vary", "Accept".to_owned()));
        }
    }
    let cacheable = (status == 200 || status == 201) && !send.is_empty();
    if cacheable {
        let tag = etag(&send);
        if facts.is_get
            && status == 200
            && facts
                .if_none_match
                .as_deref()
                .is_some_and(|h| if_none_match(h, &tag))
        {
            status = 304;
            send.clear();
            headers.retain(|(k, _)| *k != "content-type");
        }
        headers.push(("etag", tag));
        headers.push((
            "cache-control",
            "max-age=0, private, must-revalidate".to_owned(),
        ));
    } else {
        headers.push(("cache-control", "no-cache".to_owned()));
    }
    headers.push(("x-request-id", facts.request_id.clone()));
    headers.push(("x-runtime", runtime.to_owned()));
    Rendered {
        status,
        headers,
        body: send,
    }
}

/// The reason phrase Rails' public exceptions put in a JSON body.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        406 => "Not Acceptable",
        _ => "Internal Server Error",
    }
}

/// An answer of Rails' exception handling (no route, malformed body, crash).
pub fn render_exception(
    status: u16,
    facts: &RequestFacts,
    format_json: bool,
    runtime: &str,
) -> Rendered {
    let json = format_json || negotiates_json(facts);
    let (content_type, body) = if json {
        (
            "application/json; charset=UTF-8",
            format!(r#"{{"status":{status},"error":"{}"}}"#, reason(status)).into_bytes(),
        )
    } else {
        ("text/html; charset=UTF-8", Vec::new())
    };
    Rendered {
        status,
        headers: vec![
            ("content-type", content_type.to_owned()),
            ("x-request-id", facts.request_id.clone()),
            ("x-runtime", runtime.to_owned()),
            ("content-length", body.len().to_string()),
        ],
        body,
    }
}

/// An incoming `X-Request-Id` as Rails keeps it (`[A-Za-z0-9_\-@]`, at most 255; it may
/// end up empty), or `None` when absent or blank (then a new one is made).
pub fn sanitize_request_id(incoming: &str) -> Option<String> {
    if incoming.trim().is_empty() {
        return None;
    }
    Some(
        incoming
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@'))
            .take(255)
            .collect(),
    )
}

/// A new request id: a random UUID (version 4) from 16 random bytes.
pub fn new_request_id(mut random: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let mut id = String::with_capacity(36);
    for (i, b) in random.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// `X-Runtime`: seconds with six decimals.
pub fn runtime(elapsed: std::time::Duration) -> String {
    format!("{:.6}", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(accept: Option<&str>) -> RequestFacts {
        RequestFacts {
            is_get: true,
            accept: accept.map(str::to_owned),
            request_id: "r".into(),
            ..Default::default()
        }
    }

    #[test]
    fn controller_headers() {
        let r = render_controller(200, Some("{}".into()), &facts(Some("*/*")), "0.000100");
        let names: Vec<&str> = r.headers.iter().map(|h| h.0).collect();
        assert_eq!(
            names[6..],
            [
                "content-type",
                "vary",
                "etag",
                "cache-control",
                "x-request-id",
                "x-runtime"
            ]
        );
        let r = render_controller(204, None, &facts(Some("application/json, */*")), "0.0");
        assert!(
            r.headers
                .iter()
                .all(|h| h.0 != "vary" && h.0 != "content-type")
        );
        assert!(r.headers.contains(&("cache-control", "no-cache".into())));
        let tag = etag(b"{}");
        let cond = RequestFacts {
            if_none_match: Some(tag),
            ..facts(None)
        };
        assert_eq!(
            render_controller(200, Some("{}".into()), &cond, "0").status,
            304
        );
    }

    #[test]
    fn exception_bodies_follow_accept() {
        assert!(
            render_exception(404, &facts(Some("*/*")), false, "0")
                .body
                .is_empty()
        );
        assert_eq!(
            render_exception(404, &facts(Some("application/json")), false, "0").body,
            br#"{"status":404,"error":"Not Found"}"#
        );
        assert!(
            render_exception(404, &facts(Some("application/json, */*")), false, "0")
                .body
                .is_empty()
        );
        assert_eq!(
            render_exception(
                500,
                &facts(Some("text/html;q=0.5, application/json")),
                false,
                "0"
            )
            .body,
            br#"{"status":500,"error":"Internal Server Error"}"#
        );
    }

    #[test]
    fn request_ids() {
        assert_eq!(sanitize_request_id("ab c$-1@_").as_deref(), Some("abc-1@_"));
        assert_eq!(sanitize_request_id("!!!").as_deref(), Some(""));
        assert_eq!(sanitize_request_id("  "), None);
        let id = new_request_id([0xff; 16]);
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        let bytes: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(
            new_request_id(bytes),
            "00112233-4455-4677-8899-aabbccddeeff"
        );
    }
}
