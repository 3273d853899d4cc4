//! The data verify of a rollout step, relayed: `POST /admin/routes/{route}/verify` asks
//! the route's new side (the identity service's `POST /internal/verify`, marked
//! `x-shadow: verify`, a mark the proxy strips from every client's request) to compare,
//! on both databases, every member written since `since_micros`. The autopilot asks it
//! through the admin API because in the mesh only the proxy may call the identity
//! service's internal paths. The answer is the identity service's own (counts and field
//! names only), or a 502/504 naming what failed.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use proxy_routing::Side;
use serde_json::Value;

use crate::Proxy;
use crate::forward;

const PATH: &str = "/internal/verify";
const MARK: &str = "verify";

/// The identity service answers within its own request deadline (15 s by default).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (counts and a map of field names).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Asks the new side of `route` to verify the members written since `since_micros`:
/// its status and JSON answer, or why none came.
pub async fn ask(proxy: &Proxy, route: &str, since_micros: i64) -> (StatusCode, Value) {
    let failed = |status, why: &str| (status, serde_json::json!({ "error": why }));
    let snap = proxy.live.snapshot();
    let Some(address) = snap
        .table
        .get(route)
        .and_then(|r| snap.config.address_of(r, Side::New))
        .cloned()
    else {
        return failed(StatusCode::CONFLICT, "the route has no new side");
    };
    drop(snap);
    let mut req = Request::new(forward::full(Bytes::new()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static(PATH);
    req.headers_mut()
        .insert("x-shadow", HeaderValue::from_static(MARK));
    req.headers_mut()
        .insert("x-verify-since", HeaderValue::from(since_micros));
    let resp = match proxy.upstreams.send(&address, req, TIMEOUT).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(route, error = %e, "verify not asked");
            return failed(StatusCode::BAD_GATEWAY, "the new side did not answer");
        }
    };
    let status = resp.status();
    let body = match http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return failed(
                StatusCode::BAD_GATEWAY,
                "the new side's answer was unreadable",
            );
        }
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(value) if value.is_object() => (status, value),
        _ => failed(
            StatusCode::BAD_GATEWAY,
            &format!("the new side answered {status} without a verify report"),
        ),
    }
}
