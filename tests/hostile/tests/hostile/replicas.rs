//! Several identity replicas on one database, as a cluster runs them: an attacker who
//! spreads guesses over the replicas is throttled as one, and a key rotation rolled out
//! replica by replica logs nobody out.

use serde_json::{Value, json};

use crate::support::{call, email, identity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_two_replicas_are_throttled_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.sqlite3").display()
    );
    let limit = ["--throttle-per-account-client", "4"];
    let a = identity(dir.path(), Some(&database), &limit);
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b = identity(&b_dir, Some(&database), &limit);
    let email = email("spread");
    let (s, _) = call(
        "POST",
        format!("http://{}/api/v1/users", a.http),
        None,
        Some(json!({"user": {"email": email, "password": "password-right", "nickname": "spread"}})),
    )
    .await;
    assert_eq!(s, 201);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let replica = if i % 2 == 0 { a.http } else { b.http };
        let (s, _) = call(
            "POST",
            format!("http://{replica}/api/v1/sessions"),
            None,
            Some(json!({"email": email, "password": format!("guess-{i}")})),
        )
        .await;
        statuses.push(s);
    }
    assert_eq!(statuses[..4], [401; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_replica_by_replica_logs_nobody_out() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.sqlite3").display()
    );
    // The old replica signs with its key (made in its data directory on first start).
    let old = identity(dir.path(), Some(&database), &[]);
    let old_key = dir.path().join("identity-data").join("jwt-signing-key.pem");
    assert!(old_key.exists());
    let email = email("rotation");
    let (s, _) = call(
        "POST",
        format!("http://{}/api/v1/users", old.http),
        None,
        Some(json!({"user": {"email": email, "password": "password-1", "nickname": "rotation"}})),
    )
    .await;
    assert_eq!(s, 201);
    let (_, v) = call(
        "POST",
        format!("http://{}/api/v1/sessions", old.http),
        None,
        Some(json!({"email": email, "password": "password-1"})),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_owned();
    // The new replica signs with a new key and verifies the old one too.
    let new_dir = dir.path().join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new = identity(
        &new_dir,
        Some(&database),
        &["--jwt-verification-keys", old_key.to_str().unwrap()],
    );
    assert_eq!(
        call(
            "GET",
            format!("http://{}/api/v1/users/me", new.http),
            Some(&token),
            None
        )
        .await
        .0,
        200
    );
    let (_, jwks) = call(
        "GET",
        format!("http://{}/.well-known/jwks.json", new.http),
        None,
        None,
    )
    .await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
    // Its own tokens work on the old replica once that one verifies the new key.
    let (_, v) = call(
        "POST",
        format!("http://{}/api/v1/sessions", new.http),
        None,
        Some(json!({"email": email, "password": "password-1"})),
    )
    .await;
    let new_token = v["token"].as_str().unwrap().to_owned();
    let kid = |token: &str| -> Value {
        use base64::Engine;
        let head = token.split('.').next().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"].clone()
    };
    assert_ne!(
        kid(&token),
        kid(&new_token),
        "the new replica signs with its own key"
    );
    // Without the old key, a replica refuses the old tokens: the flag is what keeps them.
    let alone_dir = dir.path().join("alone");
    std::fs::create_dir_all(&alone_dir).unwrap();
    let alone = identity(&alone_dir, Some(&database), &[]);
    assert_eq!(
        call(
            "GET",
            format!("http://{}/api/v1/users/me", alone.http),
            Some(&token),
            None
        )
        .await
        .0,
        401
    );
}
