//! The SREs' alerts in a real Prometheus (Debian's binary): it scrapes the proxy and the
//! identity service, loads the PrometheusRule's groups from `k8s/base/monitoring` (every
//! second instead of the default), and while app clients read and write through the
//! proxy every recording rule returns series and every alert expression parses. Then
//! the identity service is killed: the guard aborts the route, the page
//! `MemberRouteAbortedByGuard` fires, as Prometheus' own API says; the route is resumed
//! and the alert resolves. Every expression of the Grafana board returns series too (its
//! abort annotations once there was an abort).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, Process, email, manifest, migrating, proxy, proxy_config, until,
};

/// Debian's Prometheus.
const PROMETHEUS: &str = "/usr/bin/prometheus";

const RULE: &str = include_str!("../../../../k8s/base/monitoring/prometheusrule.yaml");

/// The Grafana board.
const BOARD: &str = include_str!("../../../../k8s/base/monitoring/dashboard.json");

/// Every PromQL expression of the board (its panels' and its annotations'), with the
/// route variable at "all".
fn board_expressions() -> Vec<String> {
    let board: Value = serde_json::from_str(BOARD).unwrap();
    let panels = board["panels"].as_array().unwrap();
    let annotations = board["annotations"]["list"].as_array().unwrap();
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .chain(annotations.iter())
        .map(|t| t["expr"].as_str().unwrap().replace("$route", ".*"))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Prometheus on `dir`, scraping `proxy` and `identity` every second, with the rules.
fn prometheus(dir: &std::path::Path, proxy: SocketAddr, identity: SocketAddr) -> (Process, String) {
    let rule: serde_yaml::Value = serde_yaml::from_str(RULE).unwrap();
    let mut groups = rule["spec"]["groups"].clone();
    for group in groups.as_sequence_mut().unwrap() {
        group["interval"] = serde_yaml::Value::from("1s");
    }
    let rules = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
        serde_yaml::Value::from("groups"),
        groups,
    )]))
    .unwrap();
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.yaml]\nscrape_configs:\n- job_name: proxy\n  static_configs: [{{targets: ['{proxy}'], labels: {{pod: proxy-a}}}}]\n- job_name: identity\n  static_configs: [{{targets: ['{identity}'], labels: {{pod: identity-a}}}}]\n"
        ),
    )
    .unwrap();
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's prometheus (tests/setup.sh does)"
    );
    let port = free_port();
    let process = Process::start(
        PROMETHEUS,
        &[
            &format!("--config.file={}", dir.join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
    );
    (process, format!("http://127.0.0.1:{port}"))
}

async fn get(url: String) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// The result of an instant query; `Err` with Prometheus' error when it does not parse.
async fn query(prometheus: &str, expr: &str) -> Result<Vec<Value>, String> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(answer["error"].to_string());
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Waits (up to 60 s) until every expression of `exprs` parses and returns series.
async fn series_from(prometheus: &str, exprs: Vec<String>, what: &str) {
    let mut empty = exprs;
    for _ in 0..60 {
        let mut still = Vec::new();
        for expr in &empty {
            match query(prometheus, expr).await {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => still.push(expr.clone()),
                Err(e) => panic!("{what}: {expr}: {e}"),
            }
        }
        empty = still;
        if empty.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{what} without series: {empty:?}");
}

/// The alerts named `name` firing now, as Prometheus' API lists them.
async fn firing(prometheus: &str, name: &str) -> Vec<Value> {
    get(format!("{prometheus}/api/v1/alerts"))
        .await
        .and_then(|a| a["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_abort_pages_through_a_real_prometheus_and_resolves_on_resume() {
    let mut m = migrating(false, &[]);
    let dir = tempfile::tempdir().unwrap();
    // Half the users on each side, every legacy answer compared; a guard quick to judge
    // errors, and only errors (a busy machine slows the new side down now and then).
    let config = proxy_config(
        m.legacy.addr,
        m.identity.http,
        "guard:\n  window_secs: 10\n  min_requests: 5\n  max_error_rate: 0.2\n  error_rate_relative_to_legacy: false\n  max_mismatch_rate: 1.0\n  max_p99_ratio: 1000000\n",
    );
    let p = proxy(dir.path(), &manifest(50), &config);
    let (_prometheus, prom) = prometheus(dir.path(), p.admin, m.identity.http);
    assert!(
        until(Duration::from_secs(30), || async {
            reqwest::get(format!("{prom}/-/ready"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await,
        "Prometheus did not start"
    );

    // App clients: sign up, log in, read the profile and change it, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    // Ten, so that both sides serve some of them (a user sticks to one side).
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (stop, base) = (stop.clone(), format!("http://{}", p.addr));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let email = email("alerts");
                let _ = http
                    .post(format!("{base}/api/v1/users"))
                    .json(&json!({"user": {"email": email, "password": "password-1", "nickname": "alerts"}}))
                    .send()
                    .await;
                let token = http
                    .post(format!("{base}/api/v1/sessions"))
                    .json(&json!({"email": email, "password": "password-1"}))
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()?["token"]
                    .as_str()?
                    .to_owned();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let _ = http
                        .get(format!("{base}/api/v1/users/me"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    if n % 5 == 0 {
                        let _ = http
                            .patch(format!("{base}/api/v1/users/me"))
                            .bearer_auth(&token)
                            .json(&json!({"user": {"nickname": format!("alerts-{n}")}}))
                            .send()
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(())
            })
        })
        .collect();

    // Every recording rule returns series once there is traffic; every alert parses.
    let rule: serde_yaml::Value = serde_yaml::from_str(RULE).unwrap();
    let rules: Vec<serde_yaml::Value> = rule["spec"]["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect();
    let records: Vec<String> = rules
        .iter()
        .filter_map(|r| r["record"].as_str().map(str::to_owned))
        .collect();
    series_from(&prom, records, "recording rules").await;
    let (aborts, board): (Vec<String>, Vec<String>) = board_expressions()
        .into_iter()
        .partition(|e| e.contains("proxy_guard_aborts_total"));
    series_from(&prom, board, "board expressions").await;
    for r in &rules {
        if let Some(expr) = r["expr"].as_str().filter(|_| r["alert"].is_string())
            && let Err(e) = query(&prom, expr).await
        {
            panic!("alert {}: {e}", r["alert"].as_str().unwrap_or("?"));
        }
    }
    assert!(firing(&prom, "MemberRouteAbortedByGuard").await.is_empty());

    // The new side dies: the guard aborts the route, and the page fires.
    m.identity.process.kill();
    assert!(
        until(Duration::from_secs(60), || async {
            !firing(&prom, "MemberRouteAbortedByGuard").await.is_empty()
        })
        .await,
        "the abort did not page: {}",
        p.process.output()
    );
    // Now that an abort happened, the board's abort annotations have it.
    series_from(&prom, aborts, "the board's abort annotations").await;
    let alert = firing(&prom, "MemberRouteAbortedByGuard").await.remove(0);
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    let route = alert["labels"]["route"].as_str().unwrap().to_owned();
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains(&route),
        "{alert}"
    );

    // The clients stop, the route is resumed: the alert resolves.
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let http = reqwest::Client::new();
    for r in [
        "sessions",
        "users-me-read",
        "users-me",
        "users-read",
        "users",
    ] {
        let resumed = http
            .post(format!("http://{}/admin/routes/{r}/resume", p.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status().as_u16(), 200);
    }
    assert!(
        until(Duration::from_secs(30), || async {
            firing(&prom, "MemberRouteAbortedByGuard").await.is_empty()
        })
        .await,
        "the alert did not resolve"
    );
}
