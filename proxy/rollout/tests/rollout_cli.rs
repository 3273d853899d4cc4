//! The `rollout` binary against real proxies (upstreams need not answer for these
//! commands): a step edits the manifest and the proxy follows, a skipped step and a
//! bad token are refused with their exit codes, abort and resume act at once; with
//! several replicas, every one is asked and an abort reaches all it can; the autopilot
//! refuses bad settings and, without traffic, never advances.

use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "rollout-test-admin-token";

fn rollout(admin: &str, vs: &std::path::Path, token: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args(args)
        .env("ROLLOUT_ADMIN_URL", admin)
        .env("ROLLOUT_ADMIN_TOKEN", token)
        .env("ROLLOUT_VIRTUAL_SERVICE", vs)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The repository's VirtualService and a proxy config, in a temp dir.
fn files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let vs = dir.join("vs.yaml");
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
    let manifest = std::fs::read_to_string(
        std::path::Path::new(&crate_dir).join("../../istio/virtualservice-member-api.yaml"),
    )
    .unwrap();
    std::fs::write(&vs, &manifest).unwrap();
    let cfg = dir.join("proxy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstreams:\n  legacy-api.members.svc.cluster.local: {{address: \"127.0.0.1:9\", role: legacy}}\n  identity.members.svc.cluster.local: {{address: \"127.0.0.1:9\", role: new}}\nadmin_token: {TOKEN}\n"
        ),
    )
    .unwrap();
    (vs, cfg, manifest)
}

/// A proxy replica on the files; its admin URL, and what stops it when dropped.
async fn replica(
    vs: &std::path::Path,
    cfg: &std::path::Path,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let bound = migration_proxy::Proxy::build(migration_proxy::Settings {
        virtual_service: vs.to_owned(),
        config: cfg.to_owned(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        reload_interval: Duration::from_secs(60),
        drain: Duration::from_secs(1),
        workers: 1,
    })
    .await
    .unwrap();
    let admin = format!("http://{}", bound.admin_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run_until(async {
        let _ = rx.await;
    }));
    (admin, tx)
}

/// What one replica's admin API says of `route`: its state and new share.
async fn route_state(admin: &str, route: &str) -> (String, f64) {
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{admin}/admin/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == route)
        .unwrap()
        .clone();
    (
        r["state"].as_str().unwrap().to_owned(),
        r["new_share_percent"].as_f64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_follow_the_plan_and_reach_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, cfg, manifest) = files(dir.path());
    let (admin, tx) = replica(&vs, &cfg).await;

    let run = |args: &'static [&'static str], token: &'static str| {
        let (admin, vs) = (admin.clone(), vs.clone());
        async move {
            tokio::task::spawn_blocking(move || rollout(&admin, &vs, token, args))
                .await
                .unwrap()
        }
    };
    let (code, out) = run(&["status"], TOKEN).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("users-read") && out.contains("1.0%"), "{out}");
    let (code, out) = run(&["step", "users-read"], TOKEN).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("serves 5.0%"), "the proxy follows: {out}");
    assert!(std::fs::read_to_string(&vs).unwrap().contains("weight: 95"));
    let (code, out) = run(&["set-weight", "users-read", "50"], TOKEN).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("skips the plan"));
    let (code, _) = run(&["abort", "users-read"], TOKEN).await;
    assert_eq!(code, 0);
    let (code, out) = run(&["step", "users-read"], TOKEN).await;
    assert_eq!(code, 1, "an aborted route does not step: {out}");
    let (code, out) = run(&["resume", "users-read"], TOKEN).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0.0% identity"),
        "the manifest says 0% after the abort: {out}"
    );
    let (code, _) = run(&["status"], "wrong-token-of-some-length").await;
    assert_eq!(code, 2);
    // Comments and other rules are untouched.
    let edited = std::fs::read_to_string(&vs).unwrap();
    assert_eq!(edited.lines().count(), manifest.lines().count());
    assert!(edited.contains("# Routing of the legacy member REST API"));
    let _ = tx.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_is_asked_and_an_abort_reaches_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, cfg, _) = files(dir.path());
    let (first, _stop_first) = replica(&vs, &cfg).await;
    let (second, _stop_second) = replica(&vs, &cfg).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let run = |admins: Vec<String>, args: &'static [&'static str]| {
        let vs = vs.clone();
        async move {
            tokio::task::spawn_blocking(move || rollout(&admins.join(","), &vs, TOKEN, args))
                .await
                .unwrap()
        }
    };
    let both = vec![first.clone(), second.clone()];

    let (code, out) = run(both.clone(), &["status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("replica {first}")) && out.contains(&format!("replica {second}")),
        "{out}"
    );

    // The guard of one replica aborted the route (here: its admin API): a step is
    // refused, and says which replica stops it.
    let aborted = reqwest::Client::new()
        .post(format!("{second}/admin/routes/users-read/abort"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(aborted.status().is_success());
    let (code, out) = run(both.clone(), &["step", "users-read"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&second), "{out}");
    assert!(std::fs::read_to_string(&vs).unwrap().contains("weight: 99"));

    let (code, out) = run(both.clone(), &["resume", "users-read"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(both.clone(), &["step", "users-read"]).await;
    assert_eq!(code, 0, "{out}");
    for admin in [&first, &second] {
        assert_eq!(
            route_state(admin, "users-read").await,
            ("running".into(), 5.0)
        );
    }

    // An abort with one replica unreachable: the others abort at once, the manifest
    // says 0%, and the exit code says a replica was missed.
    let (code, out) = run(
        vec![first.clone(), gone.clone(), second.clone()],
        &["abort", "users-read"],
    )
    .await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&gone), "{out}");
    for admin in [&first, &second] {
        assert_eq!(
            route_state(admin, "users-read").await,
            ("aborted".into(), 0.0)
        );
    }
    assert!(
        std::fs::read_to_string(&vs)
            .unwrap()
            .contains("weight: 100")
    );

    // A step cannot be judged without every replica.
    let (code, out) = run(vec![first.clone()], &["resume", "users-read"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(vec![first.clone(), gone.clone()], &["status"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("running"),
        "the reachable replica is shown: {out}"
    );
    let (code, out) = run(vec![first, gone.clone()], &["step", "users-read"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&gone), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autopilot_refuses_bad_settings_and_never_advances_without_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, cfg, manifest) = files(dir.path());
    let (admin, tx) = replica(&vs, &cfg).await;
    let journal = dir.path().join("journal.jsonl");
    let run = |args: Vec<String>| {
        let (admin, vs) = (admin.clone(), vs.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                rollout(&admin, &vs, TOKEN, &args)
            })
            .await
            .unwrap()
        }
    };
    let auto = |extra: &[&str]| {
        let mut args: Vec<String> = ["auto", "--journal", journal.to_str().unwrap()]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    };
    // Bad settings and unknown routes change nothing.
    for bad in [
        &["users-read", "--target", "0"][..],
        &["users-read", "--interval", "0"],
        &["users-read", "--max-p99-ratio", "0.5"],
        &["users-read", "--bake", "-1"],
        &["no-such-route"],
    ] {
        let (code, out) = run(auto(bad)).await;
        assert_eq!(code, 2, "{bad:?}: {out}");
    }
    assert_eq!(std::fs::read_to_string(&vs).unwrap(), manifest);
    // No traffic: the step bakes, pauses for evidence and gives up; the route stays.
    let (code, out) = run(auto(&[
        "users-read",
        "--bake",
        "0.2",
        "--interval",
        "0.1",
        "--min-comparisons",
        "5",
        "--max-pause",
        "0.5",
    ]))
    .await;
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("evidence short: 0 of 5 comparisons"), "{out}");
    assert_eq!(std::fs::read_to_string(&vs).unwrap(), manifest);
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["action"], "give_up", "{last}");
    assert_eq!(last["percent"], 1, "{last}");
    // The report of that journal does not pass (exit 6), and says why.
    let out_path = dir.path().join("report.json");
    let (code, out) = run(vec![
        "report".into(),
        "--journal".into(),
        journal.to_str().unwrap().into(),
        "--out".into(),
        out_path.to_str().unwrap().into(),
    ])
    .await;
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("users-read: at 1%, NOT PASSED"), "{out}");
    assert!(out.contains("never rolled out by the autopilot"), "{out}");
    // The data verify relay refuses a bad body, and says when the new side is away.
    let http = reqwest::Client::new();
    let verify = |body: &'static str| {
        http.post(format!("{admin}/admin/routes/users-read/verify"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    assert_eq!(verify("{}").await.unwrap().status().as_u16(), 400);
    assert_eq!(verify("not json").await.unwrap().status().as_u16(), 400);
    assert_eq!(
        verify(r#"{"since_micros": 0}"#)
            .await
            .unwrap()
            .status()
            .as_u16(),
        502
    );

    // The dashboard's report: what the autopilot published stays when a client sends
    // too much, or no JSON object.
    let report = || async {
        http.get(format!("{admin}/admin/report"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let published = report().await;
    assert!(published.contains("\"passed\":false"), "{published}");
    let put = |body: Vec<u8>| {
        http.put(format!("{admin}/admin/report"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(300 * 1024));
    assert_eq!(put(huge.into_bytes()).await.unwrap().status().as_u16(), 413);
    assert_eq!(put(b"[1]".to_vec()).await.unwrap().status().as_u16(), 400);
    assert_eq!(
        put(b"{not json".to_vec()).await.unwrap().status().as_u16(),
        400
    );
    assert_eq!(report().await, published);
    let anonymous = http
        .put(format!("{admin}/admin/report"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // A second replica that cannot be read: its evidence is missing, so nothing
    // advances, and the autopilot says which replica it waits for.
    let (second, stop_second) = replica(&vs, &cfg).await;
    let _ = stop_second.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let both = format!("{admin},{second}");
    let args = [
        "auto",
        "users-read",
        "--journal",
        journal.to_str().unwrap(),
        "--bake",
        "0.2",
        "--interval",
        "0.1",
        "--min-comparisons",
        "1",
        "--max-pause",
        "0.5",
    ]
    .map(str::to_owned);
    let (code, out) = tokio::task::spawn_blocking({
        let vs = vs.clone();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rollout(&both, &vs, TOKEN, &args)
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains(&format!("replicas not read ({second})")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&vs).unwrap(), manifest);
    let _ = tx.send(());
}

/// Two hands on one route: while the autopilot bakes a step, an SRE (or a second
/// autopilot) moves the weight. The autopilot does not write over it: it stops, and the
/// manifest keeps the other hand's weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autopilot_stops_when_the_weight_is_changed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, cfg, _) = files(dir.path());
    let (admin, tx) = replica(&vs, &cfg).await;
    let journal = dir.path().join("journal.jsonl");
    let auto = tokio::task::spawn_blocking({
        let (admin, vs, journal) = (admin.clone(), vs.clone(), journal.clone());
        move || {
            rollout(
                &admin,
                &vs,
                TOKEN,
                &[
                    "auto",
                    "users-read",
                    "--journal",
                    journal.to_str().unwrap(),
                    "--bake",
                    "60",
                    "--interval",
                    "0.1",
                ],
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, out) = tokio::task::spawn_blocking({
        let (admin, vs) = (admin.clone(), vs.clone());
        move || rollout(&admin, &vs, TOKEN, &["step", "users-read"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    let (code, out) = tokio::time::timeout(Duration::from_secs(20), auto)
        .await
        .expect("the autopilot stopped")
        .unwrap();
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("changed outside the autopilot (1% → 5%)"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&vs).unwrap().contains("weight: 95"));
    let last = std::fs::read_to_string(&journal).unwrap();
    assert!(
        last.lines().last().unwrap().contains("\"give_up\""),
        "{last}"
    );
    let _ = tx.send(());
}
