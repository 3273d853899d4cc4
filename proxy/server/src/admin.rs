//! The admin API, on its own port. Unauthenticated: `/healthz`, `/readyz`, `/metrics`,
//! and `/dashboard` (a page that holds no data: it asks for the token and polls the
//! status and samples with it). Behind the config's `admin_token`
//! (`Authorization: Bearer ...`): the status of every route, recent masked mismatch
//! samples, runtime weight overrides, abort, resume and reload, the data verify of a
//! route's recent writes (relayed to its new side) and the rollout report the
//! autopilot publishes for the dashboard. Without a configured
//! token those answer 403: the rollout cannot be changed anonymously.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::forward::{ProxyBody, full};
use crate::{Proxy, ShareCause};

/// Largest rollout report accepted for the dashboard.
const MAX_REPORT_BYTES: usize = 256 * 1024;

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn json_reply(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    reply(status, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json_reply(status, &json!({ "error": message }))
}

pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => {
            return if proxy.draining.load(Ordering::SeqCst) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            };
        }
        (&Method::GET, "/metrics") => {
            proxy.publish_usage();
            return reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                proxy.metrics.render(),
            );
        }
        (&Method::GET, "/dashboard") => return crate::dashboard::page(),
        _ => {}
    }
    let snap = proxy.live.snapshot();
    let Some(token) = snap.config.admin_token.as_ref() else {
        return error(
            StatusCode::FORBIDDEN,
            "admin API disabled: no admin_token in the proxy config",
        );
    };
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token.verify(presented) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["admin", "status"]) => json_reply(StatusCode::OK, &status(&proxy)),
        (&Method::GET, ["admin", "samples"]) => {
            let routes: Vec<String> = snap
                .table
                .routes()
                .iter()
                .map(|r| r.name().to_owned())
                .collect();
            let samples: Vec<Value> = routes
                .iter()
                .map(|r| json!({ "route": r, "samples": proxy.samples.recent(r) }))
                .collect();
            json_reply(StatusCode::OK, &json!({ "routes": samples }))
        }
        (&Method::GET, ["admin", "report"]) => {
            let report = proxy.report.lock().ok().and_then(|r| r.clone());
            match report {
                Some(text) => reply(StatusCode::OK, "application/json", text.to_string()),
                // Nothing published yet: no content (not an error for the dashboard).
                None => reply(StatusCode::NO_CONTENT, "application/json", String::new()),
            }
        }
        (&Method::PUT, ["admin", "report"]) => {
            let Ok(body) = Limited::new(req.into_body(), MAX_REPORT_BYTES)
                .collect()
                .await
            else {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "the report is too large");
            };
            let body = body.to_bytes();
            if !serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object()) {
                return error(StatusCode::BAD_REQUEST, "the report must be a JSON object");
            }
            let Ok(text) = std::str::from_utf8(&body) else {
                return error(StatusCode::BAD_REQUEST, "the report must be UTF-8");
            };
            if let Ok(mut r) = proxy.report.lock() {
                *r = Some(text.into());
            }
            json_reply(StatusCode::OK, &json!({ "published": true }))
        }
        (&Method::POST, ["admin", "reload"]) => match proxy.reload() {
            Ok(changed) => json_reply(StatusCode::OK, &json!({ "reloaded": changed })),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        },
        (_, ["admin", "routes", name, action]) => {
            let name = (*name).to_owned();
            if snap.table.get(&name).is_none() {
                return error(StatusCode::NOT_FOUND, "no route of that name");
            }
            route_action(&proxy, &method, &name, action, req).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

async fn route_action(
    proxy: &Proxy,
    method: &Method,
    name: &str,
    action: &str,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (result, cause) = match (method, action) {
        (&Method::PUT, "weight") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::BAD_REQUEST, "body too large or unreadable"),
            };
            let Ok(value) = serde_json::from_slice::<Value>(&body) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be JSON: {\"percent\": 0-100}",
                );
            };
            let Some(percent) = value
                .get("percent")
                .and_then(Value::as_f64)
                .filter(|p| (0.0..=100.0).contains(p))
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "percent must be a number from 0 to 100",
                );
            };
            let basis_points = (percent * 100.0).round() as u32;
            tracing::warn!(
                route = name,
                basis_points,
                "weight override set through the admin API"
            );
            let result = proxy
                .live
                .update_overrides(|o| o.set_rule(name, basis_points).map_err(|e| e.to_string()));
            (result, ShareCause::AdminWeight)
        }
        (&Method::DELETE, "weight") => {
            tracing::warn!(
                route = name,
                "weight override cleared through the admin API"
            );
            let result = proxy.live.update_overrides(|o| {
                o.clear_rule(name);
                Ok(())
            });
            (result, ShareCause::AdminClear)
        }
        (&Method::POST, "abort") => {
            tracing::warn!(
                route = name,
                "route aborted through the admin API: new share 0"
            );
            if let Ok(mut m) = proxy.manual_aborts.lock() {
                m.insert(name.to_owned());
            }
            let result = proxy
                .live
                .update_overrides(|o| o.set_rule(name, 0).map_err(|e| e.to_string()));
            (result, ShareCause::AdminAbort)
        }
        (&Method::POST, "verify") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::BAD_REQUEST, "body too large or unreadable"),
            };
            let Some(since) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("since_micros").and_then(Value::as_i64))
                .filter(|s| *s >= 0)
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be JSON: {\"since_micros\": microseconds since the epoch}",
                );
            };
            let (status, answer) = crate::verify::ask(proxy, name, since).await;
            return json_reply(status, &answer);
        }
        (&Method::POST, "resume") => {
            proxy.guard.resume(name, Instant::now());
            if let Ok(mut m) = proxy.manual_aborts.lock() {
                m.remove(name);
            }
            tracing::warn!(
                route = name,
                "route resumed through the admin API: the manifest's weight applies"
            );
            let result = proxy.live.update_overrides(|o| {
                o.clear_rule(name);
                Ok(())
            });
            (result, ShareCause::AdminResume)
        }
        _ => return error(StatusCode::NOT_FOUND, "no such route action"),
    };
    proxy.publish_route_gauges(cause);
    match result {
        Ok(()) => json_reply(StatusCode::OK, &route_status(proxy, name)),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    }
}

fn route_status(proxy: &Proxy, name: &str) -> Value {
    let snap = proxy.live.snapshot();
    let Some(route) = snap.table.get(name) else {
        return Value::Null;
    };
    let now = Instant::now();
    let figures = proxy.guard.route_snapshot(name, now);
    json!({
        "name": name,
        "new_share_percent": f64::from(route.new_share_basis_points()) / 100.0,
        "manifest_share_percent": f64::from(route.manifest_basis_points()) / 100.0,
        "overridden": route.is_overridden(),
        "shadow_percent": {
            "of_legacy_requests": route.shadow_percent(proxy_routing::Side::Legacy),
            "of_new_requests": route.shadow_percent(proxy_routing::Side::New),
        },
        "state": if proxy.is_aborted(name) { "aborted" } else { "running" },
        "aborted_by": if proxy.guard.state(name).is_aborted() {
            Value::from("guard")
        } else if proxy.is_aborted(name) {
            Value::from("operator")
        } else {
            Value::Null
        },
        "figures": figures,
        "noise": proxy.noise.report(name),
        "share_history": proxy.history.changes(name, now),
    })
}

fn status(proxy: &Proxy) -> Value {
    let snap = proxy.live.snapshot();
    let routes: Vec<Value> = snap
        .table
        .routes()
        .iter()
        .map(|r| route_status(proxy, r.name()))
        .collect();
    let guard = proxy.guard.config();
    json!({
        "virtual_service": snap.table.virtual_service(),
        "draining": proxy.draining.load(Ordering::SeqCst),
        "guard": {
            "window_secs": guard.window_secs,
            "min_requests": guard.min_requests,
            "min_comparisons": guard.min_comparisons,
            "max_error_rate": guard.max_error_rate,
            "max_mismatch_rate": guard.max_mismatch_rate,
            "max_p99_ratio": guard.max_p99_ratio,
        },
        "routes": routes,
    })
}
