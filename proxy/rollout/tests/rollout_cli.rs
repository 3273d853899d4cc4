//! The `rollout` binary against a real proxy (upstreams need not answer for these
//! commands): a step edits the manifest and the proxy follows, a skipped step and a
//! bad token are refused with their exit codes, abort and resume act at once.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_follow_the_plan_and_reach_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let vs = dir.path().join("vs.yaml");
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
    let manifest = std::fs::read_to_string(
        std::path::Path::new(&crate_dir).join("../../istio/virtualservice-member-api.yaml"),
    )
    .unwrap();
    std::fs::write(&vs, &manifest).unwrap();
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstreams:\n  legacy-api.members.svc.cluster.local: {{address: \"127.0.0.1:9\", role: legacy}}\n  identity.members.svc.cluster.local: {{address: \"127.0.0.1:9\", role: new}}\nadmin_token: {TOKEN}\n"
        ),
    )
    .unwrap();
    let bound = migration_proxy::Proxy::build(migration_proxy::Settings {
        virtual_service: vs.clone(),
        config: cfg,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        reload_interval: Duration::from_secs(60),
        drain: Duration::from_secs(1),
        workers: 0,
    })
    .await
    .unwrap();
    let admin = format!("http://{}", bound.admin_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run_until(async {
        let _ = rx.await;
    }));

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
