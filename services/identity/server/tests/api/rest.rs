//! The legacy REST contract on the identity service: the token lifecycle, validation,
//! Rails' parameter quirks, the intended differences, dry runs and the operational
//! endpoints. (The parity suite in `tests/parity` holds every row of the contract
//! against the Rails app as well.)

use serde_json::json;

use crate::on_both_databases;
use crate::support::{Db, TestApp, spawn, spawn_with};

on_both_databases!(
    sign_up_validates_normalises_and_renders,
    |db: Db| async move {
        let app = spawn(db).await;
        let r = app
        .send("POST", "/api/v1/users", None, Some(json!({"user": {"email": "  Ann@Example.COM ", "password": "password123", "nickname": "당근", "phone_number": "+821012345678"}})))
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
        let j = r.json();
        assert_eq!(j["email"], "ann@example.com");
        assert_eq!(j["nickname"], "당근");
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "email",
                "nickname",
                "phone_number",
                "profile_image_url",
                "created_at",
                "updated_at"
            ]
        );
        let ts = j["created_at"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
            "{ts}"
        );

        // Every broken rule at once, fields in order; uniqueness case-insensitive.
        let r = app
        .send("POST", "/api/v1/users", None, Some(json!({"user": {"email": "ANN@example.com", "password": "short", "nickname": 5, "phone_number": " +821012345678", "profile_image_url": "http://x"}})))
        .await;
        assert_eq!(r.status, 422);
        assert_eq!(
            r.text,
            r#"{"errors":{"email":["has already been taken"],"password":["is too short (minimum is 8 characters)"],"nickname":["is too short (minimum is 2 characters)"],"phone_number":["is invalid"],"profile_image_url":["must be an https URL"]}}"#
        );

        // Wrapped parameters: `password` is not a column, so it is not wrapped.
        let r = app
            .send(
                "POST",
                "/api/v1/users",
                None,
                Some(json!({"email": "x@y.z"})),
            )
            .await;
        assert_eq!(r.status, 422);
        assert_eq!(
            r.json(),
            json!({"errors": {"password": ["can't be blank"], "nickname": ["can't be blank"]}})
        );

        // Form bodies are read like JSON ones, but not wrapped.
        let r = app
            .raw(
                "POST",
                "/api/v1/users",
                "application/x-www-form-urlencoded",
                "user[email]=form%40x.io&user[password]=password123&user[nickname]=formy",
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = app
            .raw(
                "POST",
                "/api/v1/users",
                "application/x-www-form-urlencoded",
                "email=form2%40x.io",
            )
            .await;
        assert_eq!(
            (r.status, r.text.as_str()),
            (
                400,
                r#"{"error":"param is missing or the value is empty: user"}"#
            )
        );

        for body in [json!({}), json!({"user": {}})] {
            let r = app.send("POST", "/api/v1/users", None, Some(body)).await;
            assert_eq!(
                (r.status, r.text.as_str()),
                (
                    400,
                    r#"{"error":"param is missing or the value is empty: user"}"#
                )
            );
        }
        let r = app
            .raw("POST", "/api/v1/users", "application/json", "{not json")
            .await;
        assert_eq!((r.status, r.text.as_str()), (400, ""));
        // Intended difference 1: where the legacy crashes, a 400 with a JSON error.
        let r = app
            .send("POST", "/api/v1/users", None, Some(json!({"user": "x"})))
            .await;
        assert_eq!(r.status, 400);
        assert!(r.json()["error"].is_string());
        let r = app
            .send(
                "POST",
                "/api/v1/users",
                None,
                Some(json!({"user": {"email": "n@x.io", "password": 12345678, "nickname": "nn"}})),
            )
            .await;
        assert_eq!(r.status, 400);
        // NUL characters (which PostgreSQL cannot store) are refused, not a 5xx.
        let r = app.send("POST", "/api/v1/users", None, Some(json!({"user": {"email": "nul@x.io", "password": "password123", "nickname": "a\u{0}b"}}))).await;
        assert_eq!(r.status, 400);
        assert_eq!(app.login("nul\u{0}@x.io", "password123").await.status, 400);
    }
);

on_both_databases!(token_lifecycle, |db: Db| async move {
    let app = spawn_with(db, &["--refresh-reuse-grace-secs", "30"]).await;
    let (id, token, refresh) = app.member("life@example.com").await;
    let me = app
        .send("GET", "/api/v1/users/me", Some(&token), None)
        .await;
    assert_eq!((me.status, me.json()["id"].as_i64()), (200, Some(id)));
    assert_eq!(
        app.send("GET", "/api/v1/users/me", None, None).await.text,
        r#"{"error":"Unauthorized"}"#
    );

    // Refresh rotates: the old pair stops working.
    let r = app
        .send(
            "POST",
            "/api/v1/sessions/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (token2, refresh2) = (
        r.json()["token"].as_str().unwrap().to_owned(),
        r.json()["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token), None)
            .await
            .status,
        401
    );
    assert_ne!(refresh2, refresh);
    let reuse = app
        .send(
            "POST",
            "/api/v1/sessions/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(
        (reuse.status, reuse.text.as_str()),
        (401, r#"{"error":"Invalid refresh token"}"#)
    );
    // Within the grace period the reuse is only refused: the new pair still works.
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token2), None)
            .await
            .status,
        200
    );

    // A second session; a password change ends it but keeps the current one.
    let other = app.login("life@example.com", "password123").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = app
        .send(
            "PUT",
            "/api/v1/users/me/password",
            Some(&token2),
            Some(json!({"current_password": "nope", "password": "newpassword1"})),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.text.as_str()),
        (422, r#"{"errors":{"current_password":["is invalid"]}}"#)
    );
    let ok = app
        .send(
            "PUT",
            "/api/v1/users/me/password",
            Some(&token2),
            Some(json!({"current_password": "password123", "password": "newpassword1"})),
        )
        .await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&other), None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token2), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.login("life@example.com", "password123").await.status,
        401
    );
    assert_eq!(
        app.login("LIFE@example.com ", "newpassword1").await.status,
        201
    );

    // Profile: wrapped JSON, email not changeable, updated_at moves only on change.
    let before = app
        .send("GET", "/api/v1/users/me", Some(&token2), None)
        .await
        .json();
    let same = app
        .send(
            "PATCH",
            "/api/v1/users/me",
            Some(&token2),
            Some(json!({"email": "evil@x.io", "nickname": "member"})),
        )
        .await
        .json();
    assert_eq!(
        (same["email"].clone(), same["updated_at"].clone()),
        (before["email"].clone(), before["updated_at"].clone())
    );
    // Past the millisecond of the last change (timestamps render milliseconds), a
    // change must move `updated_at`.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let changed = app
        .send(
            "PATCH",
            "/api/v1/users/me",
            Some(&token2),
            Some(json!({"nickname": "renamed"})),
        )
        .await
        .json();
    assert_eq!(changed["nickname"], "renamed");
    assert!(
        changed["updated_at"].as_str() > before["updated_at"].as_str(),
        "{changed} vs {before}"
    );

    // Log-out: 204 even without a token, then the token is refused.
    assert_eq!(
        app.send("DELETE", "/api/v1/sessions", None, None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.send("DELETE", "/api/v1/sessions", Some(&token2), None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token2), None)
            .await
            .status,
        401
    );
});

on_both_databases!(withdrawal_scrubs_and_frees_the_email, |db: Db| async move {
    let app = spawn(db).await;
    let (id, token, _) = app.member("gone@example.com").await;
    let (other_id, _, _) = app.member("stays@example.com").await;
    assert_eq!(
        app.send("DELETE", "/api/v1/users/me", Some(&token), None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token), None)
            .await
            .status,
        401
    );
    let show = app
        .send("GET", &format!("/api/v1/users/{id}"), None, None)
        .await;
    assert_eq!(
        (show.status, show.text.as_str()),
        (404, r#"{"error":"Not Found"}"#)
    );
    assert_eq!(
        app.login("gone@example.com", "password123").await.status,
        401
    );
    let batch = app
        .send(
            "GET",
            &format!("/api/v1/users?ids={other_id},{id},999999"),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(batch["users"].as_array().unwrap().len(), 1);
    let (new_id, _, _) = app.member("gone@example.com").await;
    assert!(new_id > id);
});

on_both_databases!(routes_and_lookups_follow_rails, |db: Db| async move {
    let app = spawn(db).await;
    let (a, _, _) = app.member("a@example.com").await;
    let (b, _, _) = app.member("b@example.com").await;
    let r = app
        .send(
            "GET",
            &format!("/api/v1/users?ids={b},{a},{b},x"),
            None,
            None,
        )
        .await;
    let ids: Vec<i64> = r.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(r.json()["users"][0].as_object().unwrap().len(), 4);
    let missing = app.send("GET", "/api/v1/users", None, None).await;
    assert_eq!(
        (missing.status, missing.text.as_str()),
        (
            400,
            r#"{"error":"param is missing or the value is empty: ids"}"#
        )
    );
    for path in ["/api/v1/users/abc", "/api/v1/nope", "/nope"] {
        let r = app.send("GET", path, None, None).await;
        assert_eq!((r.status, r.text.as_str()), (404, ""), "{path}");
    }
    assert_eq!(
        app.send("GET", &format!("/api/v1/users/{a}.json"), None, None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.send("GET", "/api/v1/users/99999999999999999999999", None, None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.send("PUT", "/api/v1/users/me", None, None).await.status,
        404
    );
    // Conditional GET on the weak ETag.
    let r = app
        .send("GET", &format!("/api/v1/users/{a}"), None, None)
        .await;
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let again = app
        .client
        .get(app.url(&format!("/api/v1/users/{a}")))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
});

on_both_databases!(failed_log_ins_are_throttled, |db: Db| async move {
    let app = spawn(db).await;
    app.member("victim@example.com").await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            app.login("victim@example.com", "wrong-password")
                .await
                .status,
        );
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    let r = app.login("victim@example.com", "wrong-password").await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (429, r#"{"error":"Too many attempts"}"#)
    );
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
    // Unknown emails are answered exactly like wrong passwords.
    let unknown = app.login("nobody@example.com", "wrong-password").await;
    assert_eq!(
        (unknown.status, unknown.text.as_str()),
        (401, r#"{"error":"Invalid email or password"}"#)
    );
});

on_both_databases!(dry_runs_write_nothing, |db: Db| async move {
    let app = spawn(db).await;
    let (_, token, _) = app.member("dry@example.com").await;
    let shadow = |method: &str, path: &str| {
        app.client
            .request(method.parse().unwrap(), app.url(path))
            .header("x-shadow", "dry-run")
            .header("content-type", "application/json")
    };
    // The answers are what the proxy compares: each is the write's own answer.
    let r = shadow("POST", "/api/v1/users")
        .body(json!({"user": {"email": "ghost@example.com", "password": "password123", "nickname": "ghost"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let ghost: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            ghost["id"].as_i64(),
            ghost["email"].as_str(),
            ghost["nickname"].as_str()
        ),
        (Some(0), Some("ghost@example.com"), Some("ghost")),
        "{ghost}"
    );
    let r = shadow("POST", "/api/v1/users")
        .body(json!({"user": {"email": "dry@example.com", "password": "password123", "nickname": "dup"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"errors":{"email":["has already been taken"]}}"#
    );
    let ghost_login = app.login("ghost@example.com", "password123").await;
    assert_eq!(
        ghost_login.status, 401,
        "the dry-run sign-up must not exist"
    );
    let r = shadow("PATCH", "/api/v1/users/me")
        .header("authorization", format!("Bearer {token}"))
        .body(json!({"nickname": "shadowed"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let patched: serde_json::Value = r.json().await.unwrap();
    assert_eq!(patched["nickname"], "shadowed", "{patched}");
    let me = app
        .send("GET", "/api/v1/users/me", Some(&token), None)
        .await
        .json();
    assert_eq!(me["nickname"], "member");
    let r = shadow("DELETE", "/api/v1/users/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.text().await.unwrap().is_empty());
    assert_eq!(
        app.send("GET", "/api/v1/users/me", Some(&token), None)
            .await
            .status,
        200
    );
});

on_both_databases!(operational_endpoints, |db: Db| async move {
    let app = spawn(db).await;
    let jwks = app
        .send("GET", "/.well-known/jwks.json", None, None)
        .await
        .json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none());
    assert_eq!(app.send("GET", "/healthz", None, None).await.status, 200);
    assert_eq!(app.send("GET", "/readyz", None, None).await.status, 200);
    app.send("GET", "/api/v1/users/1", None, None).await;
    let metrics = app.send("GET", "/metrics", None, None).await.text;
    assert!(
        metrics.contains(
            "identity_http_requests_total{endpoint=\"GET /api/v1/users/:id\",status=\"404\"}"
        ),
        "{metrics}"
    );
    let openapi = app.send("GET", "/openapi.json", None, None).await.json();
    assert!(openapi["paths"]["/api/v1/users"].is_object());
});

/// Whatever the body, the answer is never a server error: bodies generated by
/// proptest (deterministic seed) against one running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bodies_never_get_5xx() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let app = spawn(Db::Sqlite).await;
    let (_, token, _) = app.member("fuzz@example.com").await;
    let bytes = proptest::collection::vec(proptest::num::u8::ANY, 0..200);
    let json_like = "[{}\\[\\]\":,a-z0-9 user email password nickname]{0,80}";
    let strategy = (
        bytes,
        proptest::string::string_regex(json_like).unwrap(),
        0usize..6,
        0usize..3,
    );
    let mut runner = TestRunner::deterministic();
    let targets = [
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions/refresh"),
        ("PUT", "/api/v1/users/me/password"),
        ("PATCH", "/api/v1/users/me"),
        ("GET", "/api/v1/users"),
    ];
    let types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
    ];
    for _ in 0..150 {
        let (raw, text, target, ct) = strategy.new_tree(&mut runner).unwrap().current();
        let body = if ct == 0 { text.into_bytes() } else { raw };
        let (method, path) = targets[target];
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", types[ct])
            .header("authorization", format!("Bearer {token}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().as_u16() < 500,
            "{method} {path} {:?} -> {}",
            String::from_utf8_lossy(&body),
            r.status()
        );
    }
}

/// The service on a PostgreSQL cluster of the test's own, which the test may crash.
async fn on_a_cluster_of_its_own() -> (std::sync::Arc<test_support::OwnPostgres>, TestApp) {
    let pg = test_support::OwnPostgres::start_shared()
        .await
        .expect("a PostgreSQL cluster of the test's own");
    let url = pg.create_database("identity").unwrap();
    let app = crate::support::spawn_on(&url, tempfile::tempdir().unwrap(), &[]).await;
    (pg, app)
}

/// After a restart of the service's own database every idle connection of its pool is
/// dead, and the pools hand them out without a ping: a list of members, a log-in, a
/// sign-up and a profile change sent right after it (their look-ups of an email, a
/// phone number, failed log-ins and known clients are plain reads) are read again on a
/// live connection instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_connections_a_restart_cut_are_read_again() {
    let (pg, app) = on_a_cluster_of_its_own().await;
    let member =
        |n: usize| json!({"email": format!("m{n}@example.com"), "password": "password123"});
    let sign_up = |n: usize| {
        let mut body = member(n);
        body["nickname"] = json!(format!("member{n}"));
        body["phone_number"] = json!(format!("+82101234{n:04}"));
        app.send("POST", "/api/v1/users", None, Some(json!({ "user": body })))
    };
    assert_eq!(sign_up(0).await.status, 201);
    // Requests at the same instant: the pool holds several connections, idle afterwards.
    let logins = (0..6).map(|_| app.send("POST", "/api/v1/sessions", None, Some(member(0))));
    let mut token = String::new();
    for login in futures_util::future::join_all(logins).await {
        assert_eq!(login.status, 201, "{}", login.text);
        token = login.json()["token"].as_str().unwrap().to_owned();
    }

    pg.run(test_support::OwnPostgres::crash).await.unwrap();
    pg.run(test_support::OwnPostgres::start_again)
        .await
        .unwrap();

    // The readers' pool (every read above used it too), then the writers'.
    let listed = app.send("GET", "/api/v1/users?ids=1,2", None, None).await;
    assert_eq!(
        listed.status, 200,
        "members listed after the restart: {}",
        listed.text
    );
    let login = app
        .send("POST", "/api/v1/sessions", None, Some(member(0)))
        .await;
    assert_eq!(
        login.status, 201,
        "a log-in after the restart: {}",
        login.text
    );
    assert_eq!(sign_up(1).await.status, 201, "a sign-up after the restart");
    let change = json!({"user": {"phone_number": "+821099990000"}});
    let changed = app
        .send("PATCH", "/api/v1/users/me", Some(&token), Some(change))
        .await;
    assert_eq!(changed.status, 200, "a profile change after the restart");
}

/// A restart of the service's own database (PostgreSQL, crashed as a crash kills it):
/// the replica stays ready while its requests can wait for the database (the acquire
/// timeout), a sign-up sent meanwhile is answered once the database is back, and a
/// database gone for longer makes the replica unready until it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_database_is_waited_for_a_longer_outage_is_unready() {
    let (pg, app) = on_a_cluster_of_its_own().await;
    let sign_up = |email: &'static str| {
        let (client, url) = (app.client.clone(), app.url("/api/v1/users"));
        async move {
            let body = json!({"user": {"email": email, "password": "password123", "nickname": "restarted"}});
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(sign_up("before@example.com").await, 201);
    pg.run(test_support::OwnPostgres::crash).await.unwrap();
    assert_eq!(
        app.send("GET", "/readyz", None, None).await.status,
        200,
        "a moment's outage"
    );
    let during = tokio::spawn(sign_up("during@example.com"));
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    pg.run(test_support::OwnPostgres::start_again)
        .await
        .unwrap();
    assert_eq!(
        during.await.unwrap(),
        201,
        "the sign-up sent while the database was down"
    );
    assert_eq!(app.send("GET", "/readyz", None, None).await.status, 200);

    pg.run(test_support::OwnPostgres::crash).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let status = app.send("GET", "/readyz", None, None).await.status;
        statuses.push(status);
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert_eq!(
        statuses.last(),
        Some(&503),
        "a longer outage is reported: {statuses:?}"
    );
    // Requests sent at the same instant while it stays down wait for a connection within
    // the acquire timeout (3 s), then are refused: none is held until the request
    // deadline (15 s, which would answer 503 too).
    let started = std::time::Instant::now();
    let login = json!({"email": "before@example.com", "password": "password123"});
    let refused = futures_util::future::join_all([
        app.send("POST", "/api/v1/sessions", None, Some(login)),
        app.send("GET", "/api/v1/users?ids=1,2", None, None),
    ])
    .await;
    for r in &refused {
        assert_eq!(
            r.status, 503,
            "refused while the database is down: {}",
            r.text
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "refused after the tries' bound, not at the request deadline: {:?}",
        started.elapsed()
    );
    pg.run(test_support::OwnPostgres::start_again)
        .await
        .unwrap();
    assert_eq!(
        app.send("GET", "/readyz", None, None).await.status,
        200,
        "ready again"
    );
    assert_eq!(sign_up("after@example.com").await, 201);
}
