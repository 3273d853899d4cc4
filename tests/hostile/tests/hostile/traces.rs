//! Traces across the proxy, the identity service and its databases, exported over OTLP
//! to a receiver of the test's own (on the published OTLP protobufs): one client request
//! is one connected trace (the client's span → the proxy's → its try → the identity
//! service's request → its database calls and the legacy write-through), the replay to
//! the other side a trace of its own linked to the request's, a B3 parent continued as
//! a W3C one is, and no span that work outside a request would make (the sync's).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    call_with_headers, email, manifest, migrating_with_env, proxy_config, proxy_with_env, until,
};
use test_support::otlp::{OtlpReceiver, Received};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace, by span id.
fn trace_of(spans: &[Received], trace: &str) -> HashMap<String, Received> {
    spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace)
        .map(|s| (hex(&s.span_id), s.clone()))
        .collect()
}

/// The span's ancestors' names within `trace`, nearest first, up to one whose parent
/// is not in it; and that parent's id.
fn ancestry(trace: &HashMap<String, Received>, span: &Received) -> (Vec<String>, String) {
    let mut names = Vec::new();
    let mut parent = hex(&span.parent_span_id);
    while let Some(p) = trace.get(&parent) {
        names.push(format!("{}: {}", p.service, p.name));
        parent = hex(&p.parent_span_id);
    }
    (names, parent)
}

const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_connected_trace_from_the_proxy_to_the_databases_with_its_replay_linked()
{
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let m = migrating_with_env(true, &[], &env);
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(m.legacy.addr, m.identity.http, "");
    // Every rule at 100% for the new side, its reads replayed to the legacy.
    let mirrored = manifest(100).replace(
        "    mirror:\n      host: identity.members.svc.cluster.local\n      port:\n        number: 8080\n",
        "    mirror:\n      host: legacy-api.members.svc.cluster.local\n",
    );
    let proxy = proxy_with_env(dir.path(), &mirrored, &config, &env);
    let url = |path: &str| format!("http://{}{path}", proxy.addr);

    let email = email("traced");
    let (s, v) = call_with_headers(
        "POST",
        url("/api/v1/users"),
        &[],
        Some(json!({"user": {"email": email, "password": "password-1", "nickname": "traced"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call_with_headers(
        "POST",
        url("/api/v1/sessions"),
        &[],
        Some(json!({"email": email, "password": "password-1"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");

    // A read, a write and a read under a B3 parent, each in a trace of the client's.
    let read = "4bf92f3577b34da6a3ce929d0e0e4736";
    let write = "5bf92f3577b34da6a3ce929d0e0e4737";
    let b3 = "6bf92f3577b34da6a3ce929d0e0e4738";
    let w3c = |trace: &str| format!("00-{trace}-{CLIENT_SPAN}-01");
    let (s, v) = call_with_headers(
        "GET",
        url("/api/v1/users/me"),
        &[("authorization", &bearer), ("traceparent", &w3c(read))],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call_with_headers(
        "PATCH",
        url("/api/v1/users/me"),
        &[("authorization", &bearer), ("traceparent", &w3c(write))],
        Some(json!({"user": {"nickname": "traced-2"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call_with_headers(
        "GET",
        url("/api/v1/users/me"),
        &[
            ("authorization", &bearer),
            ("x-b3-traceid", b3),
            ("x-b3-spanid", CLIENT_SPAN),
            ("x-b3-sampled", "1"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // A client that forges its trace context: a malformed parent, a tracestate of 4 KiB,
    // B3 headers of the wrong length. Served, and its trace starts at the proxy.
    let forged_tracestate = format!("k={}", "x".repeat(4096));
    let (s, v) = call_with_headers(
        "GET",
        url("/api/v1/users/me"),
        &[
            ("authorization", &bearer),
            ("x-request-id", "forged-trace-context"),
            (
                "traceparent",
                "00-zz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", &forged_tracestate),
            ("x-b3-traceid", "abc"),
            ("x-b3-spanid", "def"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let replay_of = |spans: &[Received], proxy_span: &Received| {
        spans
            .iter()
            .find(|s| {
                s.name.starts_with("replay ")
                    && s.links
                        .iter()
                        .any(|(t, sp)| *t == proxy_span.trace_id && *sp == proxy_span.span_id)
            })
            .cloned()
    };
    let complete = |spans: &[Received]| {
        [read, write, b3].iter().all(|t| {
            let trace = trace_of(spans, t);
            trace
                .values()
                .any(|s| s.service == "identity" && s.name.contains(" db "))
                && trace.values().any(|s| s.service == "migration-proxy")
        }) && spans
            .iter()
            .any(|s| s.attribute("request_id") == Some("forged-trace-context"))
            && trace_of(spans, read)
                .values()
                .filter(|s| s.service == "migration-proxy" && s.attribute("proxy.route").is_some())
                .any(|p| replay_of(spans, p).is_some())
    };
    assert!(
        until(Duration::from_secs(20), || async {
            complete(&receiver.spans())
        })
        .await,
        "not every span arrived: {:#?}",
        receiver.spans()
    );
    // Late spans of the same requests (the write-effect question) are let in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans = receiver.spans();

    for (trace_id, method) in [(read, "GET"), (write, "PATCH"), (b3, "GET")] {
        let trace = trace_of(&spans, trace_id);
        // The proxy's span continues the client's.
        let roots: Vec<&Received> = trace
            .values()
            .filter(|s| !trace.contains_key(&hex(&s.parent_span_id)))
            .collect();
        assert_eq!(roots.len(), 1, "{trace_id}: one root: {roots:#?}");
        let root = roots[0];
        assert_eq!(root.service, "migration-proxy", "{root:?}");
        let route = root.attribute("proxy.route").unwrap_or_default();
        assert!(route.starts_with("users-me"), "{root:?}");
        assert_eq!(root.name, format!("{method} {route}"));
        assert_eq!(hex(&root.parent_span_id), CLIENT_SPAN, "{root:?}");
        assert_eq!(root.attribute("http.response.status_code"), Some("200"));
        // Its try to the new side, the identity service's request under it, and the
        // database calls under that.
        let try_span = trace
            .values()
            .find(|s| s.parent_span_id == root.span_id)
            .unwrap_or_else(|| panic!("{trace_id}: no try under the proxy's span"));
        assert_eq!(try_span.attribute("proxy.side"), Some("new"));
        let request = trace
            .values()
            .find(|s| s.service == "identity" && s.parent_span_id == try_span.span_id)
            .unwrap_or_else(|| {
                panic!("{trace_id}: the identity service's span is not under the try: {trace:#?}")
            });
        assert_eq!(request.name, format!("{method} /api/v1/users/me"));
        let db: Vec<&Received> = trace.values().filter(|s| s.name.contains(" db ")).collect();
        assert!(!db.is_empty(), "{trace_id}: no database span");
        for s in trace.values().filter(|s| s.service == "identity") {
            let (names, top) = ancestry(&trace, s);
            assert_eq!(
                top, CLIENT_SPAN,
                "{trace_id}: {} not connected: {names:?}",
                s.name
            );
        }
        if method == "PATCH" {
            for name in ["write-through commit", "legacy db update_profile_columns"] {
                assert!(
                    trace.values().any(|s| s.name == name),
                    "{trace_id}: no {name}: {:?}",
                    trace.values().map(|s| &s.name).collect::<Vec<_>>()
                );
            }
        }
    }
    // The read's replay: a trace of its own, linked to the proxy's span of the read.
    let read_trace = trace_of(&spans, read);
    let proxy_span = read_trace
        .values()
        .find(|s| s.attribute("proxy.route").is_some())
        .unwrap();
    let replay = replay_of(&spans, proxy_span).expect("the replay's span");
    assert_ne!(replay.trace_id, proxy_span.trace_id);
    assert_eq!(replay.attribute("proxy.side"), Some("legacy"));

    // Every span of the identity service belongs to a request's trace (the sync's
    // database calls, outside any request, make none); no span carries a secret.
    let request_traces: Vec<Vec<u8>> = spans
        .iter()
        .filter(|s| s.service == "migration-proxy")
        .map(|s| s.trace_id.clone())
        .collect();
    for s in spans.iter().filter(|s| s.service == "identity") {
        assert!(
            request_traces.contains(&s.trace_id),
            "a span outside any request: {s:?}"
        );
    }
    // The forged request: one trace, rooted at the proxy (no parent), its span
    // carrying none of the forged state.
    let forged = spans
        .iter()
        .find(|s| {
            s.service == "identity" && s.attribute("request_id") == Some("forged-trace-context")
        })
        .expect("the forged request's span");
    let trace = trace_of(&spans, &hex(&forged.trace_id));
    let (_, top) = ancestry(&trace, forged);
    assert_eq!(top, "", "the forged parent was taken: {trace:#?}");
    assert!(
        !format!("{trace:?}").contains("xxxxxxxx"),
        "the forged tracestate was kept"
    );
    let text = format!("{spans:?}");
    for secret in [token.as_str(), email.as_str(), "password-1"] {
        assert!(!text.contains(secret), "a span carries a secret");
    }
}

#[test]
fn a_trace_setting_this_build_cannot_honour_is_refused_by_name_before_anything_starts() {
    for (binary, args, var, value, shown) in [
        (
            "migration-proxy",
            vec![
                "--virtual-service",
                "/nonexistent.yaml",
                "--config",
                "/nonexistent.yaml",
            ],
            "OTEL_TRACES_EXPORTER",
            "zipkin",
            "OTEL_TRACES_EXPORTER=zipkin",
        ),
        (
            "identity",
            vec!["serve", "--database-url", "sqlite::memory:"],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:secret-key@collector:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let out = std::process::Command::new(crate::support::binary(binary))
            .args(&args)
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{binary}: {stderr}");
        assert!(stderr.contains(shown), "{binary}: {stderr}");
        assert!(
            !stderr.contains("secret-key"),
            "{binary} repeated a credential: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_holds_no_request_and_no_shutdown() {
    // A collector that takes connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut m = migrating_with_env(false, &[], &env);
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(m.legacy.addr, m.identity.http, "");
    let mut proxy = proxy_with_env(dir.path(), &manifest(50), &config, &env);
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    let email = email("silent");
    let (s, v) = call_with_headers(
        "POST",
        url("/api/v1/users"),
        &[],
        Some(json!({"user": {"email": email, "password": "password-1", "nickname": "silent"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // Requests go on being answered while every export hangs (each bounded by the
    // client's own 10 s: a request held by the exporter would fail it).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0..200 {
        let r = client
            .get(url("/api/v1/users?ids=1,2,3"))
            .header("traceparent", format!("00-{:032x}-{CLIENT_SPAN}-01", n + 1))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(r.status(), 200, "request {n}");
    }
    drop(client);
    // Both stop when asked, within their drain and the exporter's own bound (5 s),
    // and cleanly: the spans left are given up, not waited for.
    for (name, process) in [
        ("proxy", &mut proxy.process),
        ("identity", &mut m.identity.process),
    ] {
        let status = process.terminate(Duration::from_secs(40));
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not stop cleanly: {status:?}\n{}",
            process.output()
        );
    }
}
