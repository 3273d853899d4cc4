//! Turning a rendered contract answer into an HTTP response.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode, header};
use member_contract::headers::Rendered;
use member_contract::json_response_body;

/// A controller's answer before headers: status and optional JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Option<String>,
    pub retry_after_secs: Option<u64>,
}

impl Answer {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            body: Some(json_response_body(value)),
            retry_after_secs: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            retry_after_secs: None,
        }
    }
}

pub fn to_http(rendered: Rendered, retry_after_secs: Option<u64>, is_head: bool) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in rendered.headers {
            // Hyper sets the length itself.
            if name == "content-length" {
                continue;
            }
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(HeaderName::from_static(name), v);
            }
        }
        if let Some(secs) = retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    let body = if is_head {
        Body::empty()
    } else {
        Body::from(rendered.body)
    };
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A dry run declined (it would have taken hashing capacity from real requests): 503,
/// marked for the proxy, which counts the replay as skipped rather than a failure.
pub fn declined() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut()
        .insert("x-shadow-skipped", HeaderValue::from_static("busy"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A handler panicked: log it (without request data) and answer 500, empty.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}
