//! The built-in rules for the member API: values that legitimately differ between two
//! answers are replaced by placeholders before comparing, after their format is checked
//! (a value of the wrong format stays visible as a difference).
//!
//! Which differences are handled by rule and which by measurement, and why:
//!
//! - **`token`, `refresh_token` (everywhere, by rule).** Random per issuance, and the
//!   contract lets their *format* differ (legacy: 24-character base58; new: a JWT and an
//!   opaque base64url string). They only appear in answers to writes (log-in, refresh),
//!   which are never sent to the legacy twice, so they cannot be measured. Checked:
//!   a string of 16 to 4096 URL-safe token characters.
//! - **`expires_at` (everywhere, by rule).** Issuance time plus one hour, so it differs
//!   on every call; like the tokens it only appears in session answers (writes), which
//!   cannot be measured. Checked: the contract's timestamp format
//!   (`2026-11-26T07:17:26.992Z`).
//! - **`created_at`, `updated_at` on reads (by measurement).** They are stored values:
//!   the backfill copies them, so on a read the new service must render exactly the
//!   legacy's value, and a difference is a real bug (time zone, precision). Reads are
//!   what noise learning measures: if the legacy itself varies (a row updated between
//!   the two legacy calls) that shows up as learned noise, with thresholds.
//! - **`created_at`, `updated_at` on writes (by rule).** A write's shadow is a dry run
//!   on the new side at another instant than the legacy's real write, so the times the
//!   write itself sets differ; only their format is checked.
//! - **`$.id` in answers to `POST` (by rule).** `POST /users` answers the member just
//!   created; the dry run allocates its id from another sequence. Checked: a positive
//!   integer. Ids inside other answers (`$.user.id` of a log-in) are compared.
//!
//! Configured `ignore` patterns come on top: those locations are not compared at all.

use json_diff::{Differ, Flow, Normalizer, PatternError};
use regex::Regex;
use serde_json::Value;

use crate::config::CompareConfig;
use crate::exchange::RequestMeta;

/// Strings that can be a bearer or refresh token of either side: base58, base64url,
/// JWTs (dot-separated base64url), 16 to 4096 characters.
pub const TOKEN_FORMAT: &str = r"^[A-Za-z0-9._~+/=-]{16,4096}$";

/// The contract's timestamp: UTC, three fractional digits, `Z`.
pub const TIMESTAMP_FORMAT: &str = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$";

/// Compiled rules, shared by the comparator and the noise model.
#[derive(Debug)]
pub(crate) struct Rules {
    /// Rules for answers to safe requests (and the legacy pairs that noise is learned from).
    reads: Normalizer,
    /// Rules for answers to writes other than `POST`.
    writes: Normalizer,
    /// Rules for answers to `POST` (creations).
    creates: Normalizer,
    /// The configured ignore rules, with the difference cap.
    pub(crate) differ: Differ,
    /// The configured ignore rules without a cap, for learning.
    pub(crate) learn_differ: Differ,
    /// Compared response headers.
    pub(crate) headers: Vec<String>,
    /// Largest compared body.
    pub(crate) max_body_bytes: usize,
}

impl Rules {
    /// Compiles the built-in rules and the configured ones (validated beforehand).
    pub(crate) fn new(config: &CompareConfig) -> Result<Self, PatternError> {
        let token = Regex::new(TOKEN_FORMAT).expect("token format is a valid regex");
        let timestamp = Regex::new(TIMESTAMP_FORMAT).expect("timestamp format is a valid regex");
        let always = |n: Normalizer| -> Result<Normalizer, PatternError> {
            n.check("$..token", token.clone(), "token")?
                .check("$..refresh_token", token.clone(), "token")?
                .check("$..expires_at", timestamp.clone(), "timestamp")
        };
        let write_times = |n: Normalizer| -> Result<Normalizer, PatternError> {
            n.check("$..created_at", timestamp.clone(), "timestamp")?
                .check("$..updated_at", timestamp.clone(), "timestamp")
        };
        let reads = always(Normalizer::new())?;
        let writes = write_times(always(Normalizer::new())?)?;
        let creates = write_times(always(Normalizer::new())?)?.hook("$.id", positive_id)?;

        let mut learn_differ = Differ::new();
        for pattern in &config.ignore {
            learn_differ = learn_differ.ignore(pattern)?;
        }
        let differ = learn_differ.clone().max_differences(config.max_differences);
        Ok(Self {
            reads,
            writes,
            creates,
            differ,
            learn_differ,
            headers: config.headers.clone(),
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Normalises an answer to `request` in place.
    pub(crate) fn normalise(&self, request: &RequestMeta<'_>, body: &mut Value) {
        let rules = if request.is_safe() {
            &self.reads
        } else if request.method == "POST" {
            &self.creates
        } else {
            &self.writes
        };
        rules.apply(body, &mut ());
    }

    /// Normalises an answer of the legacy to a safe request (for learning).
    pub(crate) fn normalise_read(&self, body: &mut Value) {
        self.reads.apply(body, &mut ());
    }
}

/// `$.id` of a creation: any positive integer is the placeholder `"<id>"`; anything
/// else stays as it is, and so differs.
fn positive_id(_: &mut (), _: &str, value: &mut Value) -> Flow {
    if value.as_u64().is_some_and(|id| id > 0) {
        *value = Value::String("<id>".into());
        Flow::Handled
    } else {
        Flow::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Rules {
        Rules::new(&CompareConfig::default()).unwrap()
    }

    #[test]
    fn tokens_of_either_format_are_equal_but_must_look_like_tokens() {
        let r = rules();
        let post = RequestMeta::new("POST /api/v1/sessions", "POST", "/api/v1/sessions");
        let mut legacy = json!({"token": "WQBNCg7T1oV5rnGpT5cLb4pY", "refresh_token": "wbMxXwjaHWbiGi8haWhjXnKS"});
        let mut new = json!({
            "token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIyIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
            "refresh_token": "q1w2e3r4t5y6u7i8o9p0q1w2e3r4t5y6u7i8o9p0abc"
        });
        r.normalise(&post, &mut legacy);
        r.normalise(&post, &mut new);
        assert_eq!(legacy, new);
        assert_eq!(legacy["token"], "<token>");

        let mut bad = json!({"token": "short", "refresh_token": null});
        r.normalise(&post, &mut bad);
        assert_ne!(bad, legacy);
    }

    #[test]
    fn stored_timestamps_are_compared_on_reads_only() {
        let r = rules();
        let read = RequestMeta::new("GET /api/v1/users/me", "GET", "/api/v1/users/me");
        let write = RequestMeta::new("PATCH /api/v1/users/me", "PATCH", "/api/v1/users/me");
        let doc = json!({"id": 2, "created_at": "2026-11-26T07:17:26.992Z", "updated_at": "2026-11-26T07:17:26.992Z"});

        let mut on_read = doc.clone();
        r.normalise(&read, &mut on_read);
        assert_eq!(on_read, doc);

        let mut on_write = doc.clone();
        r.normalise(&write, &mut on_write);
        assert_eq!(on_write["updated_at"], "<timestamp>");
        assert_eq!(on_write["id"], 2, "only creations hide the id");

        let mut wrong_format = json!({"updated_at": "2026-11-26 07:17:26"});
        r.normalise(&write, &mut wrong_format);
        assert_ne!(wrong_format["updated_at"], "<timestamp>");
    }

    #[test]
    fn creations_hide_the_new_id_only_at_the_top() {
        let r = rules();
        let post = RequestMeta::new("POST /api/v1/users", "POST", "/api/v1/users");
        let mut doc = json!({"id": 42, "user": {"id": 7}});
        r.normalise(&post, &mut doc);
        assert_eq!(doc, json!({"id": "<id>", "user": {"id": 7}}));
        let mut zero = json!({"id": 0});
        r.normalise(&post, &mut zero);
        assert_eq!(zero, json!({"id": 0}));
    }
}
