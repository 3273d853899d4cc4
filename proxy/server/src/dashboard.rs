//! `GET /dashboard` on the admin port: one self-contained page (inline CSS and vanilla
//! JS, no external resource) that polls `/admin/status` and `/admin/samples` every
//! second and shows, per route, the new side's share over time, the state, the rates,
//! the most frequently differing fields and the latest masked sample diffs.
//!
//! History: the share chart draws the proxy's own record of share changes (the status's
//! `share_history`, see `history.rs`), so it is whole however late the page was opened;
//! the error and mismatch rate chart draws what the page itself polled since it opened
//! (at most 10 minutes), as the guard's figures are a sliding window with no past.
//!
//! The page holds no data and no secret, so it is served without the admin token; it
//! asks for the token, keeps it in the tab's `sessionStorage` and sends it as the bearer
//! of its own fetches (never in a URL). Each response carries a fresh CSP nonce: only
//! the page's own inline script and style run, fetches go to this origin only, and the
//! page cannot be framed.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::forward::{ProxyBody, full};

/// The page; `{{NONCE}}` is replaced by each response's nonce.
const PAGE: &str = include_str!("dashboard.html");

const NONCE_PLACEHOLDER: &str = "{{NONCE}}";

/// A CSP nonce: 128 random bits, hex. `None` when the system has no randomness to give.
fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The policy of one response: nothing but this origin's fetches and the nonce's
/// inline script and style.
fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The dashboard page, with its security headers.
pub fn page() -> Response<ProxyBody> {
    let Some(nonce) = nonce() else {
        let mut r = Response::new(full(Bytes::from_static(b"no randomness for a nonce\n")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return r;
    };
    let body = PAGE.replace(NONCE_PLACEHOLDER, &nonce);
    let mut r = Response::new(full(Bytes::from(body)));
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inline_script_and_style_carries_the_nonce() {
        let page = PAGE.replace(NONCE_PLACEHOLDER, "n0nce");
        assert_eq!(page.matches("<script").count(), 1);
        assert_eq!(page.matches("<style").count(), 1);
        assert!(page.contains(r#"<script nonce="n0nce">"#));
        assert!(page.contains(r#"<style nonce="n0nce">"#));
        // Inline style attributes and event handlers would need 'unsafe-inline'.
        assert!(!page.contains(" style=\""));
        assert!(!page.contains(" onclick="));
        // No resource from elsewhere (the SVG namespace is a name, not a fetch).
        let page = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().map(|n| n.len()), Some(32));
    }
}
