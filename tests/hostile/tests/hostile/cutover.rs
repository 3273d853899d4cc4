//! Sessions across the cutover: a session ended on the legacy before the cutover (a
//! log-out, a password change, a refresh there of a pair the identity service issued)
//! stays ended after it, and reuse detection keeps working. The legacy is the Rails app
//! when the run provides one (`HOSTILE_LEGACY_URL`, `HOSTILE_LEGACY_DATABASE_URL`; run
//! these one at a time then: they share its database), else the simulator.

use std::time::Duration;

use serde_json::json;

use crate::support::{call, email, migrating};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_out_on_the_legacy_is_not_undone_by_the_cutover() {
    let m = migrating(false, &[]);
    let email = email("logout");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (access, refresh) = m.log_in(false, &email, "password-1").await;
    // The app logs out through the legacy with the token the identity service issued.
    let (s, _) = call(
        "DELETE",
        m.legacy_url("/api/v1/sessions"),
        Some(&access),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&access), None)
            .await
            .0,
        401
    );
    m.cut_over().await;
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&access), None)
            .await
            .0,
        401,
        "a logged-out session came back at the cutover"
    );
    let (s, _) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_the_legacy_ends_the_stolen_session_for_good() {
    let m = migrating(false, &[]);
    let email = email("stolen");
    m.sign_up_on_legacy(&email, "password-1").await;
    // A thief's session, issued here; the member's own, on the legacy.
    let (stolen, stolen_refresh) = m.log_in(false, &email, "password-1").await;
    let (own, _) = m.log_in(true, &email, "password-1").await;
    let (s, _) = call(
        "PUT",
        m.legacy_url("/api/v1/users/me/password"),
        Some(&own),
        Some(json!({"current_password": "password-1", "password": "password-2"})),
    )
    .await;
    assert_eq!(s, 204);
    m.cut_over().await;
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&stolen), None)
            .await
            .0,
        401
    );
    let (s, _) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": stolen_refresh})),
    )
    .await;
    assert_eq!(s, 401);
    // The member's own session survives, with the new password.
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&own), None)
            .await
            .0,
        200
    );
    m.log_in(false, &email, "password-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_refreshed_on_the_legacy_stays_rotated_after_the_cutover() {
    let m = migrating(false, &[]);
    let email = email("rotated");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (access, refresh) = m.log_in(false, &email, "password-1").await;
    // The identity-issued pair refreshed on the legacy: the old pair ends there.
    let (s, v) = call(
        "POST",
        m.legacy_url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (new_access, new_refresh) = (
        v["token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    );
    m.cut_over().await;
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&access), None)
            .await
            .0,
        401
    );
    let (s, _) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(s, 401);
    // The pair the legacy issued in its place carries on.
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&new_access), None)
            .await
            .0,
        200
    );
    let (s, _) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": new_refresh})),
    )
    .await;
    assert_eq!(s, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_replayed_after_the_cutover_ends_its_session() {
    let m = migrating(false, &[]);
    let email = email("reuse");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (_, first) = m.log_in(false, &email, "password-1").await;
    let (s, v) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": first})),
    )
    .await;
    assert_eq!(s, 201);
    let current = v["token"].as_str().unwrap().to_owned();
    m.cut_over().await;
    // Past the grace (1 s here), the old token's reuse is theft: the session ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, _) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": first})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        call("GET", m.url("/api/v1/users/me"), Some(&current), None)
            .await
            .0,
        401
    );
}
