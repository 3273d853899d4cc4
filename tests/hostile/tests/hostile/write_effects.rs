//! Writes judged by what they did: a new side that writes wrongly while answering
//! rightly (a field dropped on a profile change, a password change that leaves the
//! other sessions alive or whose new password does not take, a withdrawal that keeps
//! the phone number) is caught by the
//! proxy's write-effect comparison, named by field, and its route aborted by the guard;
//! and the whole life of a member, served by either side, leaves no difference at all.
//! The wrong writes are planted in the databases themselves (triggers), so that the
//! binaries under test are the ones that ship.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::tcp_gate::{Gate, TcpGate};

use crate::support::{
    ADMIN_TOKEN, Migrating, ProxyProcess, call, email, legacy_sim_costing, manifest, metric,
    migrating, proxy, proxy_config, replace_file, until,
};

struct Rollout {
    m: Migrating,
    proxy: ProxyProcess,
    _dir: tempfile::TempDir,
}

/// A migrating service behind the proxy, every rule at `percent` for the new side; a
/// guard that aborts on the first mismatch of a route (and never on errors).
fn rollout(postgres: bool, percent: u32) -> Rollout {
    let m = migrating(postgres, &[]);
    let identity = m.identity.http;
    rollout_through(m, percent, identity, "")
}

/// The same, the proxy reaching the new side at `identity`, with `extra` config (placed
/// within `comparison:`, so that it may go on with settings of its own, indented).
fn rollout_through(m: Migrating, percent: u32, identity: SocketAddr, extra: &str) -> Rollout {
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(
        m.legacy.addr,
        identity,
        &format!(
            "{extra}guard:\n  min_requests: 1000000\n  min_comparisons: 1\n  max_mismatch_rate: 0.01\n"
        ),
    );
    let proxy = proxy(dir.path(), &manifest(percent), &config);
    Rollout {
        m,
        proxy,
        _dir: dir,
    }
}

impl Rollout {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    async fn sign_up(&self, email: &str, phone: &str) -> i64 {
        let (s, v) = call(
            "POST",
            self.url("/api/v1/users"),
            None,
            Some(json!({"user": {"email": email, "password": "password-1", "nickname": "effects", "phone_number": phone}})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    async fn log_in(&self, email: &str, password: &str) -> Value {
        let (s, v) = call(
            "POST",
            self.url("/api/v1/sessions"),
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
        // Which log-in, and the route's shares then (a flake against Rails, once: a
        // log-in refused; see the issue's note).
        assert_eq!(
            s,
            201,
            "log-in with {password} refused: {v}; sessions served: legacy {}, new {}",
            metric(
                self.proxy.admin,
                r#"proxy_requests_total{route="sessions",side="legacy",code="201"}"#
            )
            .await,
            metric(
                self.proxy.admin,
                r#"proxy_requests_total{route="sessions",side="new",code="201"}"#
            )
            .await,
        );
        v
    }

    async fn writes(&self, route: &str, kind: &str, result: &str) -> f64 {
        written(&self.proxy, route, kind, "effect", result).await
    }

    /// Changes the password from `password-1` to `password-2` with `token`.
    async fn change_password(&self, token: Option<&str>) {
        let (s, v) = call(
            "PUT",
            self.url("/api/v1/users/me/password"),
            token,
            Some(json!({"current_password": "password-1", "password": "password-2"})),
        )
        .await;
        assert_eq!(s, 204, "{v}");
    }

    async fn samples(&self) -> String {
        reqwest::Client::new()
            .get(format!("http://{}/admin/samples", self.proxy.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits for a write-effect mismatch of `kind` on `users-me` and the route's abort;
    /// the sample names every field of `fields`, and no value.
    async fn caught(&self, kind: &str, fields: &[&str], secret: &str) {
        assert!(
            until(Duration::from_secs(15), || async {
                self.writes("users-me", kind, "mismatch").await >= 1.0
            })
            .await,
            "no write-effect mismatch for {kind}: {}",
            self.proxy.process.output()
        );
        assert!(
            until(Duration::from_secs(5), || async {
                metric(self.proxy.admin, r#"proxy_guard_aborted{route="users-me"}"#).await == 1.0
            })
            .await,
            "the guard did not abort users-me"
        );
        let samples = self.samples().await;
        for field in fields {
            assert!(samples.contains(field), "{field} not named: {samples}");
        }
        assert!(
            !samples.contains(secret),
            "a value in the samples: {samples}"
        );
    }
}

/// Runs `sql` on a PostgreSQL database.
pub(crate) fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn phone() -> String {
    let e = email("p");
    let digits: String = e
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| char::from(b'0' + b % 10))
        .take(8)
        .collect();
    format!("+8210{digits}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_that_drops_a_field_on_the_new_side_is_caught_and_aborts_its_route() {
    let r = rollout(true, 100);
    let email = email("drop");
    r.sign_up(&email, &phone()).await;
    let session = r.log_in(&email, "password-1").await;
    let token = session["token"].as_str().unwrap();
    // Planted: the new side keeps the old phone number whatever it is asked.
    psql(
        &r.m.identity.database_url,
        "CREATE FUNCTION planted() RETURNS trigger AS $$ BEGIN NEW.phone_number := OLD.phone_number; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER planted BEFORE UPDATE ON members FOR EACH ROW EXECUTE FUNCTION planted();",
    );
    let new_phone = phone();
    let (s, v) = call(
        "PATCH",
        r.url("/api/v1/users/me"),
        Some(token),
        Some(json!({"user": {"phone_number": new_phone}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    r.caught(
        "profile_update",
        &["effect:identity:phone_number", "effect:phone_number"],
        &new_phone,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_that_leaves_the_other_sessions_alive_is_caught_and_aborts_its_route() {
    let r = rollout(true, 100);
    let email = email("pw");
    r.sign_up(&email, &phone()).await;
    let first = r.log_in(&email, "password-1").await;
    let second = r.log_in(&email, "password-1").await;
    // Planted: the legacy's session rows are not deleted (a write-through that forgets
    // them).
    psql(
        &r.m.legacy.database_url,
        "CREATE FUNCTION planted() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER planted BEFORE DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION planted();",
    );
    r.change_password(first["token"].as_str()).await;
    r.caught(
        "password_change",
        &["effect:legacy:sessions"],
        second["token"].as_str().unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_whose_new_password_does_not_take_on_the_new_side_is_caught() {
    let r = rollout(true, 100);
    let email = email("digest");
    r.sign_up(&email, &phone()).await;
    let session = r.log_in(&email, "password-1").await;
    // Planted: the new side keeps the old hash (the legacy gets the new digest, and the
    // identity service's record of it too: the two rows' digests alone look right).
    psql(
        &r.m.identity.database_url,
        "CREATE FUNCTION planted() RETURNS trigger AS $$ BEGIN NEW.password_hash := OLD.password_hash; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER planted BEFORE UPDATE ON members FOR EACH ROW EXECUTE FUNCTION planted();",
    );
    r.change_password(session["token"].as_str()).await;
    r.caught(
        "password_change",
        &["effect:identity:password"],
        "password-2",
    )
    .await;
    let samples = r.samples().await;
    assert!(
        !samples.contains("effect:legacy:password"),
        "the legacy took it: {samples}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_that_keeps_the_phone_number_is_caught_and_aborts_its_route() {
    let r = rollout(true, 100);
    let email = email("withdraw");
    let kept = phone();
    r.sign_up(&email, &kept).await;
    let session = r.log_in(&email, "password-1").await;
    psql(
        &r.m.identity.database_url,
        "CREATE FUNCTION planted() RETURNS trigger AS $$ BEGIN NEW.phone_number := OLD.phone_number; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER planted BEFORE UPDATE ON members FOR EACH ROW WHEN (NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION planted();",
    );
    let (s, v) = call(
        "DELETE",
        r.url("/api/v1/users/me"),
        session["token"].as_str(),
        None,
    )
    .await;
    assert_eq!(s, 204, "{v}");
    r.caught(
        "withdrawal",
        &["effect:identity:phone_number", "effect:phone_number"],
        &kept,
    )
    .await;
}

/// A member's whole life through the proxy: sign-up, log-ins, a profile change, a
/// refresh, a password change, a log-out and the withdrawal.
async fn life(r: &Rollout) {
    let email = email("life");
    r.sign_up(&email, &phone()).await;
    let first = r.log_in(&email, "password-1").await;
    let second = r.log_in(&email, "password-1").await;
    let token = first["token"].as_str().unwrap();
    let (s, v) = call(
        "PATCH",
        r.url("/api/v1/users/me"),
        Some(token),
        Some(json!({"user": {"nickname": "changed", "profile_image_url": "https://example.com/a.png"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, refreshed) = call(
        "POST",
        r.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": second["refresh_token"]})),
    )
    .await;
    assert_eq!(s, 201, "{refreshed}");
    r.change_password(Some(token)).await;
    let (s, _) = call("DELETE", r.url("/api/v1/sessions"), Some(token), None).await;
    assert_eq!(s, 204);
    let last = r.log_in(&email, "password-2").await;
    let (s, _) = call(
        "DELETE",
        r.url("/api/v1/users/me"),
        last["token"].as_str(),
        None,
    )
    .await;
    assert_eq!(s, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_whole_life_served_by_either_side_leaves_no_difference() {
    // The Rails app in CI (its own database), else the simulator.
    let r = rollout(false, 0);
    life(&r).await;
    replace_file(&r.proxy.vs_path, &manifest(100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    life(&r).await;
    // Every kind compared by its effect, served by each side, and each one agreeing;
    // but a withdrawal with a legacy token: it deleted the token's row, and with it the
    // only link from the token to its member (counted `unresolved`, not evidence either
    // way; a log-out's token is then checked to work nowhere).
    let kinds = [
        ("users", "sign_up", 2.0),
        ("sessions", "log_in", 6.0),
        ("sessions", "refresh", 2.0),
        ("sessions", "log_out", 2.0),
        ("users-me", "profile_update", 2.0),
        ("users-me", "password_change", 2.0),
        ("users-me", "withdrawal", 1.0),
    ];
    assert!(
        until(Duration::from_secs(20), || async {
            let mut all = true;
            for (route, kind, least) in kinds {
                all &= r.writes(route, kind, "match").await >= least;
            }
            all
        })
        .await,
        "not every write's effect compared and agreeing: {}\n{}",
        reqwest::get(format!("http://{}/metrics", r.proxy.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        r.samples().await
    );
    let text = reqwest::get(format!("http://{}/metrics", r.proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("proxy_writes_total")
            && l.contains(r#"compared="effect",result="mismatch""#)
            && !l.ends_with(" 0")),
        "a write differs: {text}\n{}",
        r.samples().await
    );
    // The writes whose replay would find the state the primary consumed are not
    // replayed: no answer of theirs is counted as a difference.
    for kind in [
        "sign_up",
        "refresh",
        "password_change",
        "withdrawal",
        "log_out",
    ] {
        assert!(
            text.contains(&format!(
                r#"kind="{kind}",compared="answer",result="not_comparable"}}"#
            )),
            "{kind}: {text}"
        );
    }
    assert!(
        !text.contains(r#"proxy_guard_aborted{route="users-me"} 1"#),
        "{text}"
    );
}

/// Two writes of one member at the same instant, served by `percent`'s side: each
/// profile change of a pair, and a password change racing a log-in.
async fn racing_writes(r: &Rollout) {
    let email = email("race");
    r.sign_up(&email, &phone()).await;
    let one = r.log_in(&email, "password-1").await;
    let two = r.log_in(&email, "password-1").await;
    let (one, two) = (
        one["token"].as_str().unwrap(),
        two["token"].as_str().unwrap(),
    );
    for round in 0..10 {
        let patch = |token, nickname: String| {
            call(
                "PATCH",
                r.url("/api/v1/users/me"),
                Some(token),
                Some(json!({"user": {"nickname": nickname}})),
            )
        };
        let (a, b) = tokio::join!(
            patch(one, format!("a{round}")),
            patch(two, format!("b{round}"))
        );
        assert_eq!((a.0, b.0), (200, 200), "round {round}: {a:?} {b:?}");
    }
    let mut token = one.to_owned();
    for round in 1..6 {
        let (change, log_in) = tokio::join!(
            call(
                "PUT",
                r.url("/api/v1/users/me/password"),
                Some(&token),
                Some(
                    json!({"current_password": format!("password-{round}"), "password": format!("password-{}", round + 1)})
                ),
            ),
            call(
                "POST",
                r.url("/api/v1/sessions"),
                None,
                Some(json!({"email": email, "password": format!("password-{round}")})),
            )
        );
        assert_eq!(change.0, 204, "round {round}: {change:?}");
        assert!(matches!(log_in.0, 201 | 401), "round {round}: {log_in:?}");
        // The changer's session lives on; the racing log-in's may or may not.
        token = r.log_in(&email, &format!("password-{}", round + 1)).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writes_of_one_member_at_the_same_instant_are_not_held_against_each_other() {
    for percent in [100, 0] {
        let r = rollout(false, percent);
        racing_writes(&r).await;
        assert!(
            until(Duration::from_secs(20), || async {
                r.writes("users-me", "profile_update", "match").await
                    + r.writes("users-me", "profile_update", "mismatch").await
                    >= 20.0
                    && r.writes("users-me", "password_change", "match").await
                        + r.writes("users-me", "password_change", "mismatch").await
                        >= 5.0
            })
            .await,
            "at {percent}%: not every write compared"
        );
        for kind in ["profile_update", "password_change", "log_in"] {
            let route = if kind == "log_in" {
                "sessions"
            } else {
                "users-me"
            };
            assert_eq!(
                r.writes(route, kind, "mismatch").await,
                0.0,
                "at {percent}%: {kind}: {}",
                r.samples().await
            );
        }
        assert_eq!(
            metric(r.proxy.admin, r#"proxy_guard_aborted{route="users-me"}"#).await,
            0.0,
            "at {percent}%"
        );
    }
}

/// The judge of a password change holds against it only the sessions created before it
/// came in, by the legacy's `created_at`. A log-in that checked the old password while
/// the change went through inserts its session after the change's: the legacy (Rails)
/// stamps the row when it saves it, so it is not held against the change. The legacy
/// simulator stamped it when the log-in came in, before its password check, and a busy
/// machine made the racing writes above differ once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_in_that_checked_its_password_while_a_write_committed_is_stamped_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim_costing(dir.path(), 13);
    let email = email("stamp");
    legacy.sign_up(&email, "password-1").await;
    let (token, _) = legacy.log_in(&email, "password-1").await;
    // The racing log-in runs as a task of its own, so it owns its request.
    let log_in = || {
        call(
            "POST",
            legacy.url("/api/v1/sessions"),
            None,
            Some(json!({"email": email, "password": "password-1"})),
        )
    };
    let stamp = |v: &Value, field: &str| {
        member_contract::Timestamp::parse_db_text(v[field].as_str().unwrap()).unwrap()
    };
    let mut judged = false;
    for round in 0..5 {
        // A log-in checking its password (cost 13: a good part of a second) while a
        // profile change commits.
        let racing = tokio::spawn(log_in());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, changed) = call(
            "PATCH",
            legacy.url("/api/v1/users/me"),
            Some(&token),
            Some(json!({"user": {"nickname": format!("stamp{round}")}})),
        )
        .await;
        assert_eq!(s, 200, "{changed}");
        let pending = !racing.is_finished();
        let (s, session) = racing.await.unwrap();
        assert_eq!(s, 201, "{session}");
        if !pending {
            continue; // the machine was too slow to race them: once more
        }
        // The access token lives one hour from the session's creation.
        let created = stamp(&session, "expires_at").plus_secs(-3600);
        assert!(
            created >= stamp(&changed, "updated_at"),
            "the session is stamped {created}, before the change that committed during its \
             log-in ({changed})"
        );
        judged = true;
        break;
    }
    assert!(
        judged,
        "no log-in was still checking its password when the change committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_side_that_never_answers_the_question_holds_no_client_and_no_slot() {
    let m = migrating(false, &[]);
    let gate = TcpGate::start(m.identity.http).await;
    // The legacy serves everyone; the replays and the questions go through the gate.
    let r = rollout_through(m, 0, gate.addr, "limits:\n  replay_timeout: 3s\n");
    let email = email("stuck");
    r.sign_up(&email, &phone()).await;
    let token = r.log_in(&email, "password-1").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |nickname: &str| {
        call(
            "PATCH",
            r.url("/api/v1/users/me"),
            Some(&token),
            Some(json!({"user": {"nickname": nickname}})),
        )
    };
    gate.set(Gate::Closed);
    // The client's answer does not wait for the question.
    let answer = tokio::time::timeout(Duration::from_secs(2), patch("while-stuck")).await;
    assert_eq!(
        answer.map(|(s, _)| s).ok(),
        Some(200),
        "the client was held"
    );
    // A data verify asked meanwhile (the autopilot's) waits for the new side without
    // holding the admin API: the status still answers at once.
    let admin = r.proxy.admin;
    let verify = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{admin}/admin/routes/users-me/verify"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"since_micros": 0}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::time::timeout(
        Duration::from_secs(1),
        reqwest::Client::new()
            .get(format!("http://{admin}/admin/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send(),
    )
    .await;
    assert!(
        status.is_ok_and(|r| r.is_ok_and(|r| r.status().is_success())),
        "the admin API waited for the stuck verify"
    );
    assert!(
        !verify.is_finished(),
        "the verify did not wait for the new side"
    );
    // The replay's slot is freed at the replay's time, counted, and nothing judged.
    assert!(
        until(Duration::from_secs(10), || async {
            metric(
                r.proxy.admin,
                r#"proxy_comparisons_total{route="users-me",result="skipped_timeout"}"#,
            )
            .await
                >= 1.0
        })
        .await,
        "the replay never gave up its slot"
    );
    assert_eq!(
        r.writes("users-me", "profile_update", "mismatch").await,
        0.0
    );
    // The new side answers again: the held verify is answered, the next write compared.
    gate.set(Gate::Open);
    let verified = tokio::time::timeout(Duration::from_secs(30), verify).await;
    assert_eq!(
        verified.ok().and_then(|v| v.ok()).and_then(|s| s.ok()),
        Some(200)
    );
    let (s, _) = patch("after").await;
    assert_eq!(s, 200);
    assert!(
        until(Duration::from_secs(10), || async {
            r.writes("users-me", "profile_update", "match").await >= 1.0
        })
        .await,
        "no write compared after the new side came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_lags_is_no_difference_and_its_waiting_questions_crowd_out_no_comparison() {
    // The legacy serves every write; the sync brings none over within the settle time.
    let m = migrating(false, &["--sync-interval-ms", "600000"]);
    let identity = m.identity.http;
    // Questions give up after 2 s (half the replay time).
    let r = rollout_through(m, 0, identity, "limits:\n  replay_timeout: 4s\n");
    let email = email("lag");
    let member = r.sign_up(&email, &phone()).await;
    let token = r.log_in(&email, "password-1").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // More writes at once than there are slots for questions: each waits out the lag.
    let writes: Vec<_> = (0..300)
        .map(|n| {
            call(
                "PATCH",
                r.url("/api/v1/users/me"),
                Some(&token),
                Some(json!({"user": {"nickname": format!("lag{n}")}})),
            )
        })
        .collect();
    for (status, body) in futures_util::future::join_all(writes).await {
        assert_eq!(status, 200, "{body}");
    }
    // Meanwhile reads are replayed and compared as ever: no replay slot is held. (The
    // member is not on the new side yet, the sync being slow: the reads differ, and
    // are judged the sync's lag.)
    let compared = || async {
        let mut n = 0.0;
        for result in ["match", "mismatch", "transient", "lagging"] {
            n += metric(
                r.proxy.admin,
                &format!(r#"proxy_comparisons_total{{route="users-read",result="{result}"}}"#),
            )
            .await;
        }
        n
    };
    let before = compared().await;
    for _ in 0..20 {
        let (s, _) = call("GET", r.url(&format!("/api/v1/users/{member}")), None, None).await;
        assert_eq!(s, 200);
    }
    assert!(
        until(Duration::from_secs(5), || async {
            compared().await >= before + 20.0
        })
        .await,
        "reads were not compared while the questions waited"
    );
    // A member the legacy has just written and the new side does not find yet is the
    // sync's lag, not a difference: no mismatch, no abort of the route.
    assert_eq!(reads(&r.proxy, "users-read", "lagging").await, 20.0);
    assert_eq!(reads(&r.proxy, "users-read", "mismatch").await, 0.0);
    assert_eq!(
        metric(r.proxy.admin, r#"proxy_guard_aborted{route="users-read"}"#).await,
        0.0
    );
    assert_eq!(
        metric(
            r.proxy.admin,
            r#"proxy_comparisons_total{route="users-read",result="skipped_overload"}"#
        )
        .await,
        0.0
    );
    // Every question settles as the sync's lag, none as a difference; the ones beyond
    // the slots are counted, not queued.
    assert!(
        until(Duration::from_secs(10), || async {
            r.writes("users-me", "profile_update", "lagging").await
                + r.writes("users-me", "profile_update", "skipped_overload")
                    .await
                >= 300.0
        })
        .await,
        "{}",
        r.samples().await
    );
    assert_eq!(
        r.writes("users-me", "profile_update", "mismatch").await,
        0.0
    );
    assert!(
        r.writes("users-me", "profile_update", "skipped_overload")
            .await
            > 0.0
    );
    assert_eq!(
        metric(r.proxy.admin, r#"proxy_guard_aborted{route="users-me"}"#).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_new_side_lacks_for_longer_than_the_lag_allowed_is_a_difference() {
    // No sync at all: the new side never gets the member the legacy creates.
    let m = migrating(false, &["--sync-interval-ms", "600000"]);
    let identity = m.identity.http;
    let r = rollout_through(
        m,
        0,
        identity,
        "  max_lag: 5s\nlimits:\n  replay_timeout: 4s\n",
    );
    let member = r.sign_up(&email("stale"), &phone()).await;
    let signed_up = std::time::Instant::now();
    let read = || async {
        let (s, _) = call("GET", r.url(&format!("/api/v1/users/{member}")), None, None).await;
        assert_eq!(s, 200);
    };
    let judged = |result: &'static str| {
        let proxy = &r.proxy;
        async move { reads(proxy, "users-read", result).await >= 1.0 }
    };
    // Within the lag allowed: the sync's lag.
    read().await;
    assert!(until(Duration::from_secs(10), || judged("lagging")).await);
    assert_eq!(reads(&r.proxy, "users-read", "mismatch").await, 0.0);
    assert_eq!(
        metric(r.proxy.admin, r#"proxy_guard_aborted{route="users-read"}"#).await,
        0.0
    );
    // Past it, the member still missing: a difference clients see, and the guard's.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(signed_up.elapsed())).await;
    read().await;
    assert!(
        until(Duration::from_secs(10), || judged("mismatch")).await,
        "{}",
        r.samples().await
    );
    assert_eq!(reads(&r.proxy, "users-read", "lagging").await, 1.0);
    assert!(
        r.samples().await.contains("$.error"),
        "{}",
        r.samples().await
    );
    assert!(
        until(Duration::from_secs(5), || async {
            metric(r.proxy.admin, r#"proxy_guard_aborted{route="users-read"}"#).await == 1.0
        })
        .await
    );
}

/// `proxy_comparisons_total` of reads of `route` with `result`.
async fn reads(proxy: &ProxyProcess, route: &str, result: &str) -> f64 {
    metric(
        proxy.admin,
        &format!(r#"proxy_comparisons_total{{route="{route}",result="{result}"}}"#),
    )
    .await
}

/// `proxy_writes_total` of `route`, `kind`, compared by `compared`, with `result`.
async fn written(
    proxy: &ProxyProcess,
    route: &str,
    kind: &str,
    compared: &str,
    result: &str,
) -> f64 {
    metric(
        proxy.admin,
        &format!(
            r#"proxy_writes_total{{route="{route}",kind="{kind}",compared="{compared}",result="{result}"}}"#
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_and_log_outs_sent_first_to_the_new_side_are_compared_by_their_answer() {
    // Every user on the legacy; refreshes and log-outs dry-run on the new side before
    // the legacy consumes their token or session.
    let m = migrating(true, &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(
        m.legacy.addr,
        m.identity.http,
        "  replay_first:\n    sessions: [refresh, log_out]\n  replay_first_timeout: 2s\n",
    );
    let proxy = proxy(dir.path(), &manifest(0), &config);
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    for round in 0..3 {
        let email = email("first");
        m.sign_up_on_legacy(&email, "password-1").await;
        let (s, v) = call(
            "POST",
            url("/api/v1/sessions"),
            None,
            Some(json!({"email": email, "password": "password-1"})),
        )
        .await;
        assert_eq!(s, 201, "round {round}: {v}");
        // The dry run consumed nothing: the refresh token is still the client's to use,
        // and the pair it gets back works.
        let (s, v) = call(
            "POST",
            url("/api/v1/sessions/refresh"),
            None,
            Some(json!({"refresh_token": v["refresh_token"]})),
        )
        .await;
        assert_eq!(s, 201, "round {round}: {v}");
        let token = v["token"].as_str().unwrap().to_owned();
        let (s, v) = call("GET", url("/api/v1/users/me"), Some(&token), None).await;
        assert_eq!(s, 200, "round {round}: {v}");
        let (s, v) = call("DELETE", url("/api/v1/sessions"), Some(&token), None).await;
        assert_eq!(s, 204, "round {round}: {v}");
        let (s, _) = call("GET", url("/api/v1/users/me"), Some(&token), None).await;
        assert_eq!(s, 401, "round {round}: the log-out took");
    }
    for kind in ["refresh", "log_out"] {
        assert!(
            until(Duration::from_secs(10), || async {
                written(&proxy, "sessions", kind, "answer", "match").await >= 3.0
            })
            .await,
            "{kind} answers not compared: {}",
            proxy.process.output()
        );
        assert_eq!(
            written(&proxy, "sessions", kind, "answer", "not_comparable").await,
            0.0,
            "{kind}"
        );
        assert_eq!(
            written(&proxy, "sessions", kind, "answer", "mismatch").await,
            0.0,
            "{kind}"
        );
    }
    // A log-in is still replayed after the legacy served it.
    assert!(written(&proxy, "sessions", "log_in", "answer", "match").await >= 3.0);
}

#[test]
fn a_replay_first_setting_that_cannot_be_honoured_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (extra, named) in [
        (
            "  replay_first:\n    sessions: [log_in]\n",
            "comparison.replay_first.sessions",
        ),
        (
            "  replay_first:\n    no-such-rule: [refresh]\n",
            "comparison.replay_first.no-such-rule",
        ),
        (
            "  replay_first_timeout: 0s\n",
            "comparison.replay_first_timeout",
        ),
    ] {
        let vs = dir.path().join("vs.yaml");
        let cfg = dir.path().join("proxy.yaml");
        std::fs::write(&vs, manifest(0)).unwrap();
        std::fs::write(&cfg, proxy_config(addr, addr, extra)).unwrap();
        // Bounded: a config wrongly taken would leave the proxy serving.
        let out = Command::new("timeout")
            .arg("20")
            .arg(crate::support::binary("migration-proxy"))
            .args([
                "--virtual-service",
                vs.to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{extra}: {stderr}");
        assert!(stderr.contains(named), "{extra}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_side_that_never_answers_a_write_sent_first_holds_the_client_only_its_bound() {
    let m = migrating(false, &[]);
    let gate = TcpGate::start(m.identity.http).await;
    // Everyone on the legacy; the dry runs sent first go through the gate.
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(
        m.legacy.addr,
        gate.addr,
        "  replay_first:\n    sessions: [refresh]\n  replay_first_timeout: 300ms\n",
    );
    let proxy = proxy(dir.path(), &manifest(0), &config);
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    let email = email("first-stuck");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (s, v) = call(
        "POST",
        url("/api/v1/sessions"),
        None,
        Some(json!({"email": email, "password": "password-1"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut refresh = v["refresh_token"].as_str().unwrap().to_owned();
    gate.set(Gate::Closed);
    for n in 0..3 {
        // The legacy still serves the refresh, after the dry run's bound (300 ms) at
        // most: well within the client's patience here.
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            call(
                "POST",
                url("/api/v1/sessions/refresh"),
                None,
                Some(json!({"refresh_token": refresh})),
            ),
        )
        .await;
        let Ok((201, v)) = answer else {
            panic!("refresh {n} held or refused: {answer:?}");
        };
        refresh = v["refresh_token"].as_str().unwrap().to_owned();
    }
    // Counted as comparisons skipped for time, not as matches or mismatches.
    assert!(
        metric(
            proxy.admin,
            r#"proxy_comparisons_total{route="sessions",result="skipped_timeout"}"#
        )
        .await
            >= 3.0,
        "{}",
        proxy.process.output()
    );
    assert_eq!(
        written(&proxy, "sessions", "refresh", "answer", "mismatch").await,
        0.0
    );
}
