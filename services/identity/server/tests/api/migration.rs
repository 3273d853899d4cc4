//! The identity service while migrating, beside a legacy (the simulator on the legacy's
//! own database): writes go through to the legacy in its format, legacy changes come
//! in, and sessions work on both sides, ending on both.

use serde_json::{Value, json};

use crate::support::{Db, TestApp, spawn_in};

struct Legacy {
    url: String,
    db_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn legacy(db_url: &str) -> Legacy {
    let state = legacy_sim::connect(db_url, 4).await.unwrap();
    let running = legacy_sim::spawn(state, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Legacy {
        url: format!("http://{}", running.addr),
        db_url: db_url.to_owned(),
        stop: Some(running.stop),
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A member signed up on the identity service (nickname "before"), logged in on it and on
/// the legacy: [our access token, the legacy's].
async fn signed_up_with_a_session_on_each_side(
    app: &TestApp,
    legacy: &Legacy,
    email: &str,
) -> [String; 2] {
    let c = &app.client;
    let user = json!({"user": {"email": email, "password": "password123", "nickname": "before"}});
    let (s, _) = call(c, "POST", app.url("/api/v1/users"), None, Some(user)).await;
    assert_eq!(s, 201);
    let login = json!({"email": email, "password": "password123"});
    let here = app.url("/api/v1/sessions");
    let (_, ours) = call(c, "POST", here, None, Some(login.clone())).await;
    let there = format!("{}/api/v1/sessions", legacy.url);
    let (_, theirs) = call(c, "POST", there, None, Some(login)).await;
    [ours, theirs].map(|s| s["token"].as_str().unwrap().to_owned())
}

async fn setup() -> (TestApp, Legacy) {
    setup_with_sync_interval_ms("100").await
}

async fn setup_with_sync_interval_ms(interval: &str) -> (TestApp, Legacy) {
    let dir = tempfile::tempdir().unwrap();
    let legacy_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("legacy.sqlite3").display()
    );
    let legacy = legacy(&legacy_url).await;
    let app = spawn_in(
        Db::Sqlite,
        dir,
        &[
            "--legacy-database-url",
            &legacy_url,
            "--legacy-bcrypt-cost",
            "4",
            "--sync-interval-ms",
            interval,
        ],
    )
    .await;
    (app, legacy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_and_sessions_work_on_both_sides() {
    let (app, legacy) = setup().await;
    let c = &app.client;
    // A sign-up on the identity service exists on the legacy, same id, its password works there.
    let (s, member) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "both@example.com", "password": "password123", "nickname": "both"}}))).await;
    assert_eq!(s, 201);
    let id = member["id"].as_i64().unwrap();
    let (s, shown) = call(
        c,
        "GET",
        format!("{}/api/v1/users/{id}", legacy.url),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, shown["nickname"].clone(), shown["created_at"].clone()),
        (200, json!("both"), member["created_at"].clone())
    );
    let (s, legacy_session) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 201);
    let legacy_token = legacy_session["token"].as_str().unwrap().to_owned();

    // A legacy token works on the identity service, and the other way round.
    assert_eq!(
        call(
            c,
            "GET",
            app.url("/api/v1/users/me"),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        200
    );
    let (s, ours) = call(
        c,
        "POST",
        app.url("/api/v1/sessions"),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 201);
    let our_token = ours["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&our_token),
            None
        )
        .await
        .0,
        200
    );

    // A profile change here shows there.
    let (s, _) = call(
        c,
        "PATCH",
        app.url("/api/v1/users/me"),
        Some(&our_token),
        Some(json!({"nickname": "renamed"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/{id}", legacy.url),
            None,
            None
        )
        .await
        .1["nickname"],
        "renamed"
    );

    // Log-out on the legacy ends our token here; log-out here ends the legacy's token there.
    assert_eq!(
        call(
            c,
            "DELETE",
            format!("{}/api/v1/sessions", legacy.url),
            Some(&our_token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            app.url("/api/v1/users/me"),
            Some(&our_token),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            c,
            "DELETE",
            app.url("/api/v1/sessions"),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        401
    );

    // A legacy refresh token refreshed here: the legacy pair is gone, ours works on both.
    let (_, l2) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    let (s, refreshed) = call(
        c,
        "POST",
        app.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": l2["refresh_token"]})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(l2["token"].as_str().unwrap()),
            None
        )
        .await
        .0,
        401
    );
    let t3 = refreshed["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        200
    );

    // A password change here: the legacy accepts the new password, other sessions end on both sides.
    let (_, l4) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    let (s, _) = call(
        c,
        "PUT",
        app.url("/api/v1/users/me/password"),
        Some(&t3),
        Some(json!({"current_password": "password123", "password": "password456"})),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(l4["token"].as_str().unwrap()),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            c,
            "POST",
            format!("{}/api/v1/sessions", legacy.url),
            None,
            Some(json!({"email": "both@example.com", "password": "password456"}))
        )
        .await
        .0,
        201
    );

    // Legacy sign-ups and changes come in by the sync.
    let (s, theirs) = call(c, "POST", format!("{}/api/v1/users", legacy.url), None, Some(json!({"user": {"email": "legacy-born@example.com", "password": "password123", "nickname": "born"}}))).await;
    assert_eq!(s, 201);
    let their_id = theirs["id"].as_i64().unwrap();
    let mut seen = false;
    for _ in 0..40 {
        if call(
            c,
            "GET",
            app.url(&format!("/api/v1/users/{their_id}")),
            None,
            None,
        )
        .await
        .0 == 200
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the legacy's sign-up arrives within 2 s");
    // Ids never collide: the next sign-up here takes the legacy's next id.
    let (_, next) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "next@example.com", "password": "password123", "nickname": "next"}}))).await;
    assert_eq!(next["id"].as_i64().unwrap(), their_id + 1);

    // Withdrawal here scrubs there.
    assert_eq!(
        call(c, "DELETE", app.url("/api/v1/users/me"), Some(&t3), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/{id}", legacy.url),
            None,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        401
    );
}

/// The legacy refusing a write (here a trigger; in life a full disk, a lock timeout, a
/// database that is down): the request fails with 503 and neither side keeps anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_legacy_write_fails_the_request_and_changes_nothing() {
    let (app, legacy) = setup().await;
    let c = &app.client;
    let (s, member) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "steady@example.com", "password": "password123", "nickname": "steady"}}))).await;
    assert_eq!(s, 201);
    let id = member["id"].as_i64().unwrap();
    let login = json!({"email": "steady@example.com", "password": "password123"});
    let (_, session) = call(
        c,
        "POST",
        app.url("/api/v1/sessions"),
        None,
        Some(login.clone()),
    )
    .await;
    let token = session["token"].as_str().unwrap().to_owned();

    let db = legacy_db::LegacyDb::connect(&legacy.db_url, 1)
        .await
        .unwrap();
    let refuse = |table: &str, event: &str| {
        format!(
            "CREATE TRIGGER refuse_{event}_{table} BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    };
    for (table, event) in [
        ("users", "UPDATE"),
        ("users", "INSERT"),
        ("sessions", "INSERT"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(refuse(table, event)))
            .execute(db.pool())
            .await
            .unwrap();
    }
    // A profile change: refused, the profile unchanged here and there.
    let (s, body) = call(
        c,
        "PATCH",
        app.url("/api/v1/users/me"),
        Some(&token),
        Some(json!({"user": {"nickname": "changed"}})),
    )
    .await;
    assert_eq!(s, 503, "{body}");
    let (_, me) = call(c, "GET", app.url("/api/v1/users/me"), Some(&token), None).await;
    assert_eq!(me["nickname"], "steady");
    // A sign-up: refused, the email still free on both sides.
    let (s, _) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "later@example.com", "password": "password123", "nickname": "later"}}))).await;
    assert_eq!(s, 503);
    // A log-in: refused, no session anywhere.
    let (s, _) = call(
        c,
        "POST",
        app.url("/api/v1/sessions"),
        None,
        Some(login.clone()),
    )
    .await;
    assert_eq!(s, 503);
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(sessions, 1, "only the first log-in's row");
    // Counted by cause, for the SREs' alert on legacy write failures.
    let metrics = c
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"identity_request_failures_total{cause="legacy_database"} 3"#),
        "{metrics}"
    );

    // The legacy accepts writes again: everything works, nothing was left behind.
    for (table, event) in [
        ("users", "UPDATE"),
        ("users", "INSERT"),
        ("sessions", "INSERT"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TRIGGER refuse_{event}_{table}"
        )))
        .execute(db.pool())
        .await
        .unwrap();
    }
    let (s, later) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "later@example.com", "password": "password123", "nickname": "later"}}))).await;
    assert_eq!(s, 201);
    assert_eq!(
        later["id"].as_i64().unwrap(),
        id + 1,
        "no id was taken by the refused sign-up"
    );
    let (s, me) = call(
        c,
        "PATCH",
        app.url("/api/v1/users/me"),
        Some(&token),
        Some(json!({"user": {"nickname": "changed"}})),
    )
    .await;
    assert_eq!((s, me["nickname"].clone()), (200, json!("changed")));
    let (s, _) = call(c, "POST", app.url("/api/v1/sessions"), None, Some(login)).await;
    assert_eq!(s, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_their_own_profile_as_the_legacy_has_it() {
    // A sync that does not come in this test's time: what is seen is read-through.
    let (app, legacy) = setup_with_sync_interval_ms("600000").await;
    let c = &app.client;
    let [ours, theirs] =
        signed_up_with_a_session_on_each_side(&app, &legacy, "fresh@example.com").await;
    // The member changes the profile on the legacy (still routed there)...
    let (s, _) = call(
        c,
        "PATCH",
        format!("{}/api/v1/users/me", legacy.url),
        Some(&theirs),
        Some(json!({"user": {"nickname": "after"}})),
    )
    .await;
    assert_eq!(s, 200);
    // ... and, moved here at once, reads it with either token.
    for token in [&ours, &theirs] {
        let (s, me) = call(c, "GET", app.url("/api/v1/users/me"), Some(token), None).await;
        assert_eq!((s, me["nickname"].clone()), (200, json!("after")));
    }
    // A withdrawal there ends both sessions here at once.
    assert_eq!(
        call(
            c,
            "DELETE",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&theirs),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(c, "GET", app.url("/api/v1/users/me"), Some(&ours), None)
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sessions_outlive_the_cutover() {
    let (app, legacy) = setup().await;
    let c = &app.client;
    // Two apps logged in on the legacy, before they were ever routed here.
    let mut sessions = Vec::new();
    for n in 0..3 {
        let email = format!("kept{n}@example.com");
        let (s, _) = call(c, "POST", format!("{}/api/v1/users", legacy.url), None, Some(json!({"user": {"email": email, "password": "password123", "nickname": format!("kept{n}")}}))).await;
        assert_eq!(s, 201);
        let (s, v) = call(
            c,
            "POST",
            format!("{}/api/v1/sessions", legacy.url),
            None,
            Some(json!({"email": email, "password": "password123"})),
        )
        .await;
        assert_eq!(s, 201);
        sessions.push((
            v["token"].as_str().unwrap().to_owned(),
            v["refresh_token"].as_str().unwrap().to_owned(),
        ));
    }
    let me = |token: String| {
        let c = c.clone();
        let url = app.url("/api/v1/users/me");
        async move { call(&c, "GET", url, Some(&token), None).await.0 }
    };
    assert_eq!(me(sessions[0].0.clone()).await, 200);
    let metrics = || async {
        c.get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let m = metrics().await;
    assert!(m.contains("identity_migrating 1"), "{m}");
    assert!(m.contains("identity_sync_leader 1"), "{m}");
    assert!(
        m.contains(r#"identity_sync_polls_total{result="synced"}"#),
        "{m}"
    );
    assert!(m.contains("identity_sync_lag_seconds_count"), "{m}");

    // The cutover (once the sync has every member) imports the live legacy sessions.
    let store = identity_store::Store::connect(&app.database_url, &Default::default())
        .await
        .unwrap();
    let legacy_db = legacy_db::LegacyDb::connect(&legacy.db_url, 2)
        .await
        .unwrap();
    let quick = identity_migration::VerifyOptions {
        settle: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let report = identity_migration::cutover(&store, &legacy_db, &quick)
        .await
        .unwrap();
    assert_eq!(report.sessions.imported, 3, "{:?}", report.sessions);
    assert!(matches!(
        identity_migration::cutover(&store, &legacy_db, &quick).await,
        Err(identity_migration::MigrationError::Refused(_))
    ));
    // The service leaves the legacy at its next poll: a sign-up no longer reaches it,
    // and takes an id above the legacy's highest.
    let mut left = false;
    for n in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (s, v) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": format!("after{n}@example.com"), "password": "password123", "nickname": "after"}}))).await;
        assert_eq!(s, 201);
        let id = v["id"].as_i64().unwrap();
        let (s, _) = call(
            c,
            "GET",
            format!("{}/api/v1/users/{id}", legacy.url),
            None,
            None,
        )
        .await;
        if s == 404 {
            assert!(id >= report.next_id, "{id} < {}", report.next_id);
            left = true;
            break;
        }
    }
    assert!(left, "the service left the legacy after the cutover");
    let m = metrics().await;
    assert!(m.contains("identity_migrating 0"), "{m}");

    // The legacy's tokens still work here: no forced log-out.
    assert_eq!(me(sessions[0].0.clone()).await, 200);
    assert_eq!(me(sessions[1].0.clone()).await, 200);
    // A log-out with a legacy token ends that session.
    assert_eq!(
        call(
            c,
            "DELETE",
            app.url("/api/v1/sessions"),
            Some(&sessions[1].0),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(me(sessions[1].0.clone()).await, 401);
    // A legacy refresh token is rotated into a session of ours; the old pair ends.
    let (s, v) = call(
        c,
        "POST",
        app.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": sessions[2].1})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(me(v["token"].as_str().unwrap().to_owned()).await, 200);
    assert_eq!(me(sessions[2].0.clone()).await, 401);
    let (s, _) = call(
        c,
        "POST",
        app.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": sessions[2].1})),
    )
    .await;
    assert_eq!(s, 401);
    // Unknown legacy-looking tokens are refused.
    assert_eq!(me("123456789ABCDEFGHJKLMNPQ".into()).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_write_nothing_on_either_side() {
    let (app, legacy) = setup().await;
    let r = app
        .client
        .post(app.url("/api/v1/users"))
        .header("x-shadow", "dry-run")
        .json(&json!({"user": {"email": "ghost@example.com", "password": "password123", "nickname": "ghost"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, _) = call(
        &app.client,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "ghost@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 401, "nothing on the legacy");
    assert_eq!(
        app.login("ghost@example.com", "password123").await.status,
        401,
        "nothing here"
    );
}

/// Members other services cache change on the legacy too while migrating: what the sync
/// brings in appears in `WatchMemberChanges` like a change made here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_changes_reach_the_change_stream() {
    use identity_proto::identity::v1::member_change::Kind;
    use identity_proto::identity::v1::{MemberChange, WatchMemberChangesRequest};

    let (app, legacy) = setup().await;
    let c = &app.client;
    let mut stream = crate::grpc_client::client(&app)
        .await
        .watch_member_changes(WatchMemberChangesRequest { after_seq: None })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || -> MemberChange {
        tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
            .await
            .expect("a change within 20 s")
            .unwrap()
            .expect("the stream goes on")
    };

    let (s, theirs) = call(c, "POST", format!("{}/api/v1/users", legacy.url), None, Some(json!({"user": {"email": "cached@example.com", "password": "password123", "nickname": "cached"}}))).await;
    assert_eq!(s, 201);
    let id = theirs["id"].as_i64().unwrap();
    let created = next().await;
    assert_eq!((created.member_id, created.kind()), (id, Kind::Created));

    let (_, session) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "cached@example.com", "password": "password123"})),
    )
    .await;
    let token = session["token"].as_str().unwrap().to_owned();
    let (s, _) = call(
        c,
        "PATCH",
        format!("{}/api/v1/users/me", legacy.url),
        Some(&token),
        Some(json!({"user": {"nickname": "renamed"}})),
    )
    .await;
    assert_eq!(s, 200);
    loop {
        let change = next().await;
        assert_eq!((change.member_id, change.kind()), (id, Kind::Updated));
        if change.member.is_some_and(|m| m.nickname == "renamed") {
            break;
        }
    }

    let (s, _) = call(
        c,
        "DELETE",
        format!("{}/api/v1/users/me", legacy.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 204);
    loop {
        let change = next().await;
        assert_eq!(change.member_id, id);
        if change.kind() == Kind::Withdrawn {
            assert_eq!(change.member, None);
            break;
        }
        assert_eq!(change.kind(), Kind::Updated);
    }
}

/// The legacy's database restarting (a crash, a failover) costs the requests that come
/// meanwhile a wait, not an error: a read that meets a connection the restart cut is read
/// again on a new one, a write whose transaction could not even begin begins again, and
/// new connections wait for the database to accept them. Over a PostgreSQL cluster of
/// the test's own, crashed as a crash kills it, with reads of one's own profile (our
/// token and a legacy token) and a profile change sent while it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_legacy_database_costs_waiting_not_errors() {
    let pg = test_support::OwnPostgres::start_shared()
        .await
        .expect("a PostgreSQL cluster of the test's own");
    let legacy_db_url = pg.create_database("legacy").unwrap();
    let legacy = legacy(&legacy_db_url).await;
    let app = spawn_in(
        Db::Sqlite,
        tempfile::tempdir().unwrap(),
        &[
            "--legacy-database-url",
            &legacy_db_url,
            "--legacy-bcrypt-cost",
            "4",
            "--sync-interval-ms",
            "100",
        ],
    )
    .await;
    let c = &app.client;
    let tokens = signed_up_with_a_session_on_each_side(&app, &legacy, "restart@example.com").await;
    for t in &tokens {
        let (s, _) = call(c, "GET", app.url("/api/v1/users/me"), Some(t), None).await;
        assert_eq!(s, 200, "both tokens work before the restart");
    }

    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    pg.run(test_support::OwnPostgres::crash).await.unwrap();
    // Readers of one's own profile, each token, until the database is back.
    let readers: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (c, url, t, down) = (
                c.clone(),
                app.url("/api/v1/users/me"),
                t.clone(),
                std::sync::Arc::clone(&down),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                loop {
                    let last = !down.load(std::sync::atomic::Ordering::SeqCst);
                    statuses.push(call(&c, "GET", url.clone(), Some(&t), None).await.0);
                    if last {
                        return statuses;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    let write = {
        let (c, url, t) = (c.clone(), app.url("/api/v1/users/me"), tokens[0].clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            call(
                &c,
                "PATCH",
                url,
                Some(&t),
                Some(json!({"user": {"nickname": "during"}})),
            )
            .await
            .0
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    pg.run(test_support::OwnPostgres::start_again)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    down.store(false, std::sync::atomic::Ordering::SeqCst);

    for (reader, which) in readers.into_iter().zip(["our token", "a legacy token"]) {
        let statuses = reader.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "reads with {which} across the restart: {statuses:?}"
        );
        assert!(statuses.len() >= 2, "reads with {which}: {statuses:?}");
    }
    assert_eq!(
        write.await.unwrap(),
        200,
        "the profile change sent while the database was down"
    );
    // On the legacy's database (its app's own pooled connections were cut too: its
    // first answers after the restart are its own 500s).
    let db = legacy_db::LegacyDb::connect(&legacy_db_url, 1)
        .await
        .unwrap();
    let on_legacy: (String,) = sqlx::query_as("SELECT nickname FROM users WHERE email = $1")
        .bind("restart@example.com")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(on_legacy.0, "during", "the change is on the legacy");
}
