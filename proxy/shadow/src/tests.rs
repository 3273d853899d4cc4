//! Tests with realistic member API answers: the helpers that build them, then the
//! comparisons (`comparisons`) and noise learning (`learning`).

mod comparisons;
mod learning;

use serde_json::{Value, json};

use crate::{Comparator, CompareConfig, Exchange, MaskedSample, NoiseModel, RequestMeta};

const ME: &str = "GET /api/v1/users/me";
const USERS: &str = "GET /api/v1/users";
const LOGIN: &str = "POST /api/v1/sessions";

fn member(nickname: &str, created_at: &str, updated_at: &str) -> Value {
    json!({
        "id": 2, "email": "bob@example.com", "nickname": nickname,
        "phone_number": "+821012345678", "profile_image_url": null,
        "created_at": created_at, "updated_at": updated_at
    })
}

fn session(token: &str, refresh: &str, expires_at: &str, user: Value) -> Value {
    json!({"token": token, "refresh_token": refresh, "expires_at": expires_at, "user": user})
}

fn ok(body: &Value) -> Exchange {
    Exchange::json(200, body).header("cache-control", "max-age=0, private, must-revalidate")
}

fn me_request() -> RequestMeta<'static> {
    RequestMeta::new(ME, "GET", "/api/v1/users/me")
}

fn setup() -> (Comparator, NoiseModel) {
    let comparator = Comparator::new(CompareConfig::default()).unwrap();
    let noise = comparator.noise_model();
    (comparator, noise)
}

/// Asserts that a sample, serialised as the admin API shows it, holds none of `secrets`.
fn assert_hides(sample: &MaskedSample, secrets: &[&str]) {
    let shown = serde_json::to_string(sample).unwrap();
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} in {shown}");
    }
}
