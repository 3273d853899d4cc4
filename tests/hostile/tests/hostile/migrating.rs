//! The identity service while migrating, played against by clients at the same
//! instant: refreshes and profile changes racing, two flows that lock the two databases,
//! dry runs that must leave nothing behind, guesses at the current password, and client
//! addresses a client writes itself. Races that only PostgreSQL can lose run on
//! PostgreSQL on both sides (the legacy simulator's database too).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{call, email, identity, manifest, migrating, proxy, proxy_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refreshes_of_one_token_at_the_same_instant_log_nobody_out() {
    let m = migrating(true, &["--refresh-reuse-grace-secs", "30"]);
    let email = email("race");
    m.sign_up_on_legacy(&email, "password-1").await;
    for round in 0..10 {
        let (_, refresh) = m.log_in(false, &email, "password-1").await;
        let racers: Vec<_> = (0..6)
            .map(|_| {
                let url = m.url("/api/v1/sessions/refresh");
                let refresh = refresh.clone();
                tokio::spawn(async move {
                    call("POST", url, None, Some(json!({"refresh_token": refresh}))).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            let (s, v) = racer.await.unwrap();
            match s {
                201 => winners.push(v["token"].as_str().unwrap().to_owned()),
                401 => {}
                other => panic!("round {round}: {other} {v}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one refresh wins");
        // The winner's pair works on both sides.
        let token = &winners[0];
        assert_eq!(
            call("GET", m.url("/api/v1/users/me"), Some(token), None)
                .await
                .0,
            200,
            "round {round}"
        );
        assert_eq!(
            call("GET", m.legacy_url("/api/v1/users/me"), Some(token), None)
                .await
                .0,
            200,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_and_a_password_change_at_once_never_deadlock() {
    // A request held past 12 s, or a 503 after the service's own 15 s deadline, is the
    // deadlock (hashing queues on a busy machine rather than refusing: see `identity`).
    let m = migrating(true, &[]);
    let email = email("locks");
    m.sign_up_on_legacy(&email, "password-0").await;
    let (token, _) = m.log_in(false, &email, "password-0").await;
    // Profile changes without a pause, while the password changes ten times: the two
    // flows lock the member's rows on both databases.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let patches: Vec<_> = (0..3)
        .map(|worker| {
            let (url, token, stop) = (m.url("/api/v1/users/me"), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"user": {"nickname": format!("w{worker}n{n}")}});
                    let answer = tokio::time::timeout(
                        Duration::from_secs(12),
                        call("PATCH", url.clone(), Some(&token), Some(body)),
                    )
                    .await;
                    statuses.push(answer.map_or(0, |(s, _)| s));
                }
                statuses
            })
        })
        .collect();
    let mut changes = Vec::new();
    for round in 0..10 {
        let body = json!({"current_password": format!("password-{round}"), "password": format!("password-{}", round + 1)});
        let answer = tokio::time::timeout(
            Duration::from_secs(12),
            call(
                "PUT",
                m.url("/api/v1/users/me/password"),
                Some(&token),
                Some(body),
            ),
        )
        .await;
        changes.push(answer.map_or(0, |(s, _)| s));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut patched = Vec::new();
    for p in patches {
        patched.extend(p.await.unwrap());
    }
    assert!(
        changes.iter().all(|s| *s == 204),
        "password changes (0: held past 12 s): {changes:?}"
    );
    assert!(
        patched.iter().all(|s| *s == 200),
        "profile changes (0: held past 12 s): {patched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_in_with_the_old_password_racing_a_password_change_never_brings_the_old_password_back()
 {
    // A legacy member's first log-in here re-hashes its bcrypt digest; one that had
    // verified the old password while the change committed stored a hash of the old
    // password over the new one (the new password then refused here, the old accepted).
    // The log-ins that lose the race fail: not so many that the throttle answers.
    let m = migrating(true, &["--throttle-per-account-client", "1000"]);
    for round in 0..8 {
        let email = email("rehash");
        m.sign_up_on_legacy(&email, "password-old").await;
        let (token, _) = m.log_in(true, &email, "password-old").await;
        // Log-ins started over the change's whole course (they queue for hashing with it).
        let log_ins: Vec<_> = (0..16u64)
            .map(|n| {
                let (url, email) = (m.url("/api/v1/sessions"), email.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(n % 4)).await;
                    call(
                        "POST",
                        url,
                        None,
                        Some(json!({"email": email, "password": "password-old"})),
                    )
                    .await
                })
            })
            .collect();
        let (s, v) = call(
            "PUT",
            m.url("/api/v1/users/me/password"),
            Some(&token),
            Some(json!({"current_password": "password-old", "password": "password-new"})),
        )
        .await;
        assert_eq!(s, 204, "round {round}: {v}");
        for log_in in log_ins {
            let (s, v) = log_in.await.unwrap();
            assert!(matches!(s, 201 | 401), "round {round}: {s} {v}");
        }
        for (password, want) in [("password-new", 201), ("password-old", 401)] {
            let body = json!({"email": email, "password": password});
            for url in [m.url("/api/v1/sessions"), m.legacy_url("/api/v1/sessions")] {
                let (s, v) = call("POST", url.clone(), None, Some(body.clone())).await;
                assert_eq!(s, want, "round {round}: {password} at {url}: {v}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profile_changes_at_once_both_stay_on_both_sides() {
    let m = migrating(true, &[]);
    let email = email("patch");
    let id = m.sign_up_on_legacy(&email, "password-1").await;
    let (token, _) = m.log_in(false, &email, "password-1").await;
    for round in 0..10u32 {
        let nickname = format!("nick{round}");
        let phone = format!(
            "+8210{:08}",
            10_000_000 + round * 7 + (id as u32 % 1000) * 100
        );
        let a = {
            let (url, token, nickname) =
                (m.url("/api/v1/users/me"), token.clone(), nickname.clone());
            tokio::spawn(async move {
                call(
                    "PATCH",
                    url,
                    Some(&token),
                    Some(json!({"user": {"nickname": nickname}})),
                )
                .await
            })
        };
        let b = {
            let (url, token, phone) = (m.url("/api/v1/users/me"), token.clone(), phone.clone());
            tokio::spawn(async move {
                call(
                    "PATCH",
                    url,
                    Some(&token),
                    Some(json!({"user": {"phone_number": phone}})),
                )
                .await
            })
        };
        assert_eq!(a.await.unwrap().0, 200);
        assert_eq!(b.await.unwrap().0, 200);
        for url in [m.url("/api/v1/users/me"), m.legacy_url("/api/v1/users/me")] {
            let (s, v) = call("GET", url.clone(), Some(&token), None).await;
            assert_eq!(s, 200);
            assert_eq!(
                (v["nickname"].as_str(), v["phone_number"].as_str()),
                (Some(nickname.as_str()), Some(phone.as_str())),
                "round {round} at {url}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_leave_nothing_behind_on_either_side() {
    // The sync is far away: anything the identity service holds of a legacy member it
    // got from the request itself.
    let m = migrating(true, &["--sync-interval-ms", "600000"]);
    let dry = |req: reqwest::RequestBuilder| req.header("x-shadow", "dry-run");
    let client = reqwest::Client::new();
    // A dry-run sign-up takes no value of the legacy's id sequence.
    let first = m.sign_up_on_legacy(&email("seq-a"), "password-1").await;
    let r = dry(client.post(m.url("/api/v1/users")))
        .json(&json!({"user": {"email": email("seq-dry"), "password": "password-1", "nickname": "dry"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, v) = call("POST", m.url("/api/v1/users"), None, Some(json!({"user": {"email": email("seq-b"), "password": "password-1", "nickname": "real"}}))).await;
    assert_eq!(s, 201);
    assert_eq!(
        v["id"].as_i64().unwrap(),
        first + 1,
        "the dry run took an id"
    );
    // A dry-run log-in of a member only the legacy holds does not import it.
    let only_legacy = email("import");
    let id = m.sign_up_on_legacy(&only_legacy, "password-1").await;
    let r = dry(client.post(m.url("/api/v1/sessions")))
        .json(&json!({"email": only_legacy, "password": "password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        call("GET", m.url(&format!("/api/v1/users/{id}")), None, None)
            .await
            .0,
        404,
        "imported by a dry run"
    );
    // A dry-run request of a member changed on the legacy does not bring the change.
    let changed = email("readthrough");
    let member = m.sign_up_on_legacy(&changed, "password-1").await;
    let (token, _) = m.log_in(false, &changed, "password-1").await;
    let (legacy_token, _) = m.log_in(true, &changed, "password-1").await;
    let (s, _) = call(
        "PATCH",
        m.legacy_url("/api/v1/users/me"),
        Some(&legacy_token),
        Some(json!({"user": {"nickname": "changed"}})),
    )
    .await;
    assert_eq!(s, 200);
    let r = dry(client.patch(m.url("/api/v1/users/me")))
        .bearer_auth(&token)
        .json(&json!({"user": {"phone_number": "+821055550000"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = call("GET", m.url(&format!("/api/v1/users/{member}")), None, None).await;
    assert_eq!(
        v["nickname"], "hostile",
        "a dry run applied the legacy's change"
    );
    // Nothing reached the legacy: no phone there.
    let (_, v) = call(
        "GET",
        m.legacy_url("/api/v1/users/me"),
        Some(&legacy_token),
        None,
    )
    .await;
    assert_eq!(v["phone_number"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_dry_run_log_ins_never_takes_hashing_from_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    // One hashing slot, slow hashes: dry runs and real log-ins compete for it.
    let identity = identity(
        dir.path(),
        None,
        &[
            "--hash-concurrency",
            "1",
            "--hash-queue-wait-ms",
            "10000",
            "--argon2-memory-kib",
            "32768",
            "--argon2-iterations",
            "3",
        ],
    );
    let base = format!("http://{}", identity.http);
    let email = email("burst");
    let (s, _) = call(
        "POST",
        format!("{base}/api/v1/users"),
        None,
        Some(json!({"user": {"email": email, "password": "password-1", "nickname": "burst"}})),
    )
    .await;
    assert_eq!(s, 201);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (url, email) = (format!("{base}/api/v1/sessions"), email.clone());
        tasks.push(tokio::spawn(async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .json(&json!({"email": email, "password": "password-1"}));
            let dry_run = i % 3 != 0;
            if dry_run {
                req = req.header("x-shadow", "dry-run");
            }
            let r = req.send().await.unwrap();
            (
                dry_run,
                r.status().as_u16(),
                r.headers().contains_key("x-shadow-skipped"),
            )
        }));
    }
    let mut declined = 0;
    for t in tasks {
        let (dry_run, status, skipped) = t.await.unwrap();
        if dry_run {
            assert!(
                status == 201 || (status == 503 && skipped),
                "dry run: {status}"
            );
            declined += usize::from(status == 503);
        } else {
            assert_eq!(status, 201, "a real log-in lost its hashing to dry runs");
        }
    }
    assert!(
        declined > 0,
        "no dry run was ever declined: the test did not compete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_current_password_with_a_stolen_token_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let identity = identity(dir.path(), None, &["--throttle-per-account-client", "5"]);
    let base = format!("http://{}", identity.http);
    let email = email("guess");
    let (s, _) = call(
        "POST",
        format!("{base}/api/v1/users"),
        None,
        Some(json!({"user": {"email": email, "password": "password-right", "nickname": "guess"}})),
    )
    .await;
    assert_eq!(s, 201);
    let (_, v) = call(
        "POST",
        format!("{base}/api/v1/sessions"),
        None,
        Some(json!({"email": email, "password": "password-right"})),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (s, _) = call(
            "PUT",
            format!("{base}/api/v1/users/me/password"),
            Some(&token),
            Some(
                json!({"current_password": format!("guess-{i}-xx"), "password": "password-taken"}),
            ),
        )
        .await;
        statuses.push(s);
    }
    assert_eq!(statuses[..5], [422; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password is refused while throttled: guessing cannot go on.
    let (s, _) = call(
        "PUT",
        format!("{base}/api/v1/users/me/password"),
        Some(&token),
        Some(json!({"current_password": "password-right", "password": "password-taken"})),
    )
    .await;
    assert_eq!(s, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_the_address_it_is_throttled_by() {
    let dir = tempfile::tempdir().unwrap();
    // Behind one trusted proxy (the migration proxy appends its peer).
    let identity = identity(
        dir.path(),
        None,
        &[
            "--trust-forwarded-for",
            "--trusted-proxy-hops",
            "1",
            "--throttle-per-account-client",
            "5",
        ],
    );
    let base = format!("http://{}", identity.http);
    let email = email("forged");
    let (s, _) = call(
        "POST",
        format!("{base}/api/v1/users"),
        None,
        Some(json!({"user": {"email": email, "password": "password-right", "nickname": "forged"}})),
    )
    .await;
    assert_eq!(s, 201);
    let mut statuses = Vec::new();
    for i in 0..8 {
        // A new address claimed on every attempt; the proxy's own entry comes last.
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/sessions"))
            .header("x-envoy-external-address", format!("203.0.113.{i}"))
            .header("x-forwarded-for", format!("198.51.100.{i}, 127.0.0.1"))
            .json(&json!({"email": email, "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// App clients through the proxy at 0%: each signs up, logs in, reads its profile and
/// changes it three times, logs out, again and again. The identity service reads every
/// member of a replayed request as the legacy has it now, often before the sync has
/// brought it: two such reads of a member not here yet, read from the legacy a write
/// apart, once both inserted it and the later insert, holding the older row, won (with
/// the sync already past the newer row: lost for good, 3 to 4 members in each run of
/// this test). Nothing may differ once the traffic stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_race_the_sync_never_bring_an_older_row_back() {
    let m = migrating(true, &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(m.legacy.addr, m.identity.http, "");
    let proxy = proxy(dir.path(), &manifest(0), &config);
    let traffic = crate::autopilot::Traffic::start(proxy.addr, 4);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(traffic.stop().await, 0, "clients saw unexpected answers");
    // The sync's last poll, then every member compared.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let verify = m.migrate(&["verify"]);
    assert!(verify.contains(" 0 deviating"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_refreshed_here_before_the_sync_brought_its_member_lives_on() {
    // The sync all but stopped: a member signed up on the legacy is not here yet when
    // its app refreshes through the identity service (the proxy sent it there).
    let m = migrating(false, &["--sync-interval-ms", "600000"]);
    // Its first pass, at start, done before the member exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let email = email("unsynced");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (_, refresh) = m.log_in(true, &email, "password-1").await;
    let (s, v) = call(
        "POST",
        m.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(s, 201, "the app was logged out: {v}");
    let token = v["token"].as_str().unwrap();
    let (s, v) = call("GET", m.url("/api/v1/users/me"), Some(token), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["email"], email.as_str());
}

/// While migrating, a request whose session the session cache holds, for a member seen
/// to agree with the legacy's row, reads only the legacy's row. Whatever the legacy then
/// changes (a profile change, a log-out, a withdrawal) is seen at the very next request
/// to a service that answered that member from memory a moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_legacy_changes_is_seen_at_once_by_a_service_that_answered_from_memory() {
    let m = migrating(true, &[]);
    let email = email("agreed");
    m.sign_up_on_legacy(&email, "password-1").await;
    let (token, _) = m.log_in(false, &email, "password-1").await;
    let (other, _) = m.log_in(false, &email, "password-1").await;
    let (on_legacy, _) = m.log_in(true, &email, "password-1").await;
    let hits = || {
        crate::support::metric(
            m.identity.http,
            "identity_session_cache_lookups_total{result=\"hit\"}",
        )
    };
    let me = |token: String| {
        let url = m.url("/api/v1/users/me");
        async move { call("GET", url, Some(&token), None).await }
    };
    let before = hits().await;
    for _ in 0..3 {
        let (s, v) = me(token.clone()).await;
        assert_eq!((s, v["nickname"].as_str()), (200, Some("hostile")), "{v}");
    }
    assert!(
        hits().await >= before + 2.0,
        "the reads were not answered from the cache"
    );

    // A profile change on the legacy: seen at once, then served from memory again.
    let (s, v) = call(
        "PATCH",
        m.legacy_url("/api/v1/users/me"),
        Some(&on_legacy),
        Some(json!({"user": {"nickname": "renamed"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for _ in 0..3 {
        let (s, v) = me(token.clone()).await;
        assert_eq!((s, v["nickname"].as_str()), (200, Some("renamed")), "{v}");
    }
    let (s, v) = me(other.clone()).await;
    assert_eq!((s, v["nickname"].as_str()), (200, Some("renamed")), "{v}");

    // Our session logged out on the legacy (its row there carries our token).
    let (s, _) = call(
        "DELETE",
        m.legacy_url("/api/v1/sessions"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = me(token.clone()).await;
    assert_eq!(
        s, 401,
        "a session logged out on the legacy still served: {v}"
    );

    // The member withdrawn on the legacy: the other session, served a moment ago, ends.
    let (s, v) = me(other.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        "DELETE",
        m.legacy_url("/api/v1/users/me"),
        Some(&on_legacy),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = me(other).await;
    assert_eq!(s, 401, "a member withdrawn on the legacy still served: {v}");
}
