//! Attacks on the proxy's routing: spellings of a path that the upstream routes alike,
//! addresses a client claims, and reloads that are only half right.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, identity, legacy_sim, manifest, metric, proxy, proxy_config, replace_file, until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubled_slashes_cannot_route_a_sign_up_around_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(100),
        &proxy_config(legacy.addr, identity.http, ""),
    );
    let client = reqwest::Client::new();
    for (i, path) in [
        "/api/v1//users",
        "//api/v1/users",
        "/api/v1/./users/",
        "/api/v1/%75sers",
    ]
    .iter()
    .enumerate()
    {
        let r = client
            .post(format!("http://{}{path}", p.addr))
            .json(&json!({"user": {"email": format!("s{i}@example.com"), "password": "password-s", "nickname": "slashes"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{path}");
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        // It reached the new side through the sign-up's own rule.
        let there = reqwest::get(format!("http://{}/api/v1/users/{id}", identity.http))
            .await
            .unwrap();
        assert_eq!(there.status().as_u16(), 200, "{path}");
    }
    assert_eq!(
        metric(
            p.admin,
            "proxy_requests_total{route=\"users\",side=\"new\",code=\"201\"}"
        )
        .await,
        4.0
    );
    assert_eq!(
        metric(
            p.admin,
            "proxy_requests_total{route=\"default\",side=\"legacy\",code=\"201\"}"
        )
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_cannot_choose_the_side() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(50),
        &proxy_config(legacy.addr, identity.http, ""),
    );
    let client = reqwest::Client::new();
    for upstream in [legacy.addr, identity.http] {
        let nickname = if upstream == legacy.addr {
            "legacy-one"
        } else {
            "identity-one"
        };
        let r = client
            .post(format!("http://{upstream}/api/v1/users"))
            .json(&json!({"user": {"email": "one@example.com", "password": "password-1", "nickname": nickname}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    // Anonymous reads are split by client address: whatever address a client claims,
    // the proxy (trusting no hop) splits it by its own peer address.
    let mut sides = std::collections::BTreeSet::new();
    for i in 0..40 {
        let r = client
            .get(format!("http://{}/api/v1/users/1", p.addr))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("x-envoy-external-address", format!("203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        sides.insert(
            r.json::<Value>().await.unwrap()["nickname"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        sides.len(),
        1,
        "forged addresses moved the client: {sides:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_one_bad_part_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let config = proxy_config(legacy.addr, identity.http, "guard: {max_error_rate: 0.2}\n");
    let p = proxy(dir.path(), &manifest(10), &config);
    let status = || async {
        reqwest::Client::new()
            .get(format!("http://{}/admin/status", p.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let share = |s: &Value| {
        s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "users-read")
            .unwrap()["new_share_percent"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(share(&status().await), 10.0);
    // Both files change: the manifest is good, the config's guard refuses a rate of 0.
    replace_file(&p.vs_path, &manifest(50));
    replace_file(
        &p.cfg_path,
        &config.replace("max_error_rate: 0.2", "max_error_rate: 0"),
    );
    assert!(
        until(Duration::from_secs(10), || async {
            metric(p.admin, "proxy_reloads_total{result=\"rejected\"}").await >= 1.0
        })
        .await
    );
    let s = status().await;
    assert_eq!(share(&s), 10.0, "the good manifest was applied alone");
    assert_eq!(s["guard"]["max_error_rate"], 0.2);
    // A config the comparison refuses, with a good manifest: refused whole as well.
    replace_file(
        &p.cfg_path,
        &config.replace(
            "learn_noise: false",
            "learn_noise: false\n  noise_absolute: 0",
        ),
    );
    assert!(
        until(Duration::from_secs(10), || async {
            metric(p.admin, "proxy_reloads_total{result=\"rejected\"}").await >= 2.0
        })
        .await
    );
    assert_eq!(share(&status().await), 10.0);
    // Both good: both applied.
    replace_file(
        &p.cfg_path,
        &config.replace("max_error_rate: 0.2", "max_error_rate: 0.3"),
    );
    assert!(
        until(Duration::from_secs(10), || async {
            share(&status().await) == 50.0
        })
        .await
    );
    assert_eq!(status().await["guard"]["max_error_rate"], 0.3);
}
