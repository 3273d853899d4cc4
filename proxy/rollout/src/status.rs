//! The proxy's view of a rollout: its admin API's status, as a table in the spirit of
//! `kubectl argo rollouts get`, and the safety check before a step.

use serde_json::Value;

/// What the admin API says of one route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStatus {
    pub name: String,
    pub share: f64,
    pub manifest_share: f64,
    pub state: String,
    pub legacy_rate: f64,
    pub new_rate: f64,
    pub new_error_rate: f64,
    pub mismatch_rate: f64,
    pub new_p99_ms: Option<f64>,
    pub legacy_p99_ms: Option<f64>,
    pub top_field: Option<String>,
    /// Who aborted the route (`guard` or `operator`), when it is aborted.
    pub aborted_by: Option<String>,
    /// The guard's reason, when it aborted the route.
    pub abort_message: Option<String>,
}

pub fn parse(status: &Value) -> Vec<RouteStatus> {
    let f64_at = |v: &Value, path: &[&str]| -> f64 {
        path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0)
    };
    status["routes"]
        .as_array()
        .map(|routes| {
            routes
                .iter()
                .map(|r| RouteStatus {
                    name: r["name"].as_str().unwrap_or("?").to_owned(),
                    share: f64_at(r, &["new_share_percent"]),
                    manifest_share: f64_at(r, &["manifest_share_percent"]),
                    state: r["state"].as_str().unwrap_or("?").to_owned(),
                    legacy_rate: f64_at(r, &["figures", "legacy", "request_rate"]),
                    new_rate: f64_at(r, &["figures", "new", "request_rate"]),
                    new_error_rate: f64_at(r, &["figures", "new", "error_rate"]),
                    mismatch_rate: f64_at(r, &["figures", "mismatch_rate"]),
                    new_p99_ms: r["figures"]["new"]["p99_ms"].as_f64(),
                    legacy_p99_ms: r["figures"]["legacy"]["p99_ms"].as_f64(),
                    top_field: r["figures"]["top_fields"][0]["field"]
                        .as_str()
                        .map(str::to_owned),
                    aborted_by: r["aborted_by"].as_str().map(str::to_owned),
                    abort_message: r["figures"]["state"]["message"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The status table.
pub fn table(routes: &[RouteStatus]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mut out = format!(
        "{:<16} {:>7} {:>9} {:<8} {:>9} {:>9} {:>8} {:>9} {:>14}  {}\n",
        "ROUTE",
        "WEIGHT",
        "MANIFEST",
        "STATE",
        "LEGACY/S",
        "NEW/S",
        "NEW ERR",
        "MISMATCH",
        "P99 NEW/LEG ms",
        "TOP FIELD"
    );
    for r in routes {
        let state = if r.state == "aborted" {
            "ABORTED".to_owned()
        } else {
            r.state.clone()
        };
        out.push_str(&format!(
            "{:<16} {:>6.1}% {:>8.1}% {:<8} {:>9.1} {:>9.1} {:>7.2}% {:>8.2}% {:>14}  {}\n",
            r.name,
            r.share,
            r.manifest_share,
            state,
            r.legacy_rate,
            r.new_rate,
            r.new_error_rate * 100.0,
            r.mismatch_rate * 100.0,
            format!("{}/{}", ms(r.new_p99_ms), ms(r.legacy_p99_ms)),
            r.top_field.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// Why raising a route's weight now would be unsafe, if it would.
pub fn unsafe_reason(
    r: &RouteStatus,
    max_error_rate: f64,
    max_mismatch_rate: f64,
) -> Option<String> {
    if r.state == "aborted" {
        return Some(format!(
            "route {} is aborted by the guard; resume it first",
            r.name
        ));
    }
    if r.new_error_rate > max_error_rate {
        return Some(format!(
            "route {}: the new side's error rate {:.2}% is above {:.2}%",
            r.name,
            r.new_error_rate * 100.0,
            max_error_rate * 100.0
        ));
    }
    if r.mismatch_rate > max_mismatch_rate {
        return Some(format!(
            "route {}: the mismatch rate {:.2}% is above {:.2}%",
            r.name,
            r.mismatch_rate * 100.0,
            max_mismatch_rate * 100.0
        ));
    }
    None
}
