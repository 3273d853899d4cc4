"""The sidecar placement (k8s/components/proxy-sidecar), where it differs from the
standalone proxy: the proxy is a native sidecar that the app outlives while it still has
requests for it; the app's Service reaches the proxy's client port; the admin API stays
inside the pod, and the probes reach what the kubelet can; the proxy keeps the standalone
Deployment's settings and files; the mesh and the identity service admit the pods that
carry it. The real binary shows that its TCP probes fail as its /readyz does, at SIGTERM.
(Rendering, schemas, env names, images and the config's upstreams: test_manifests.py and
test_proxy_files.py, for every overlay.)"""

from __future__ import annotations

import json
import socket
import time

import pytest
import yaml

import istio_schema
import sources
from manifests import (
    IMAGES, LOOPBACK, NAMESPACE, OVERLAYS, PLACEMENTS, ROOT, SIDECAR_LABEL, VIRTUAL_SERVICE,
    binary, built_binary, effective_env, find, host_port, matches, one, port_of, proxy_config_text,
    proxy_container, rendered, start_proxy, target_container,
)

SIDECAR_OVERLAYS = [o for o in OVERLAYS if PLACEMENTS[o] == "sidecar"]
# What k8s/ allows everywhere for a terminating pod's endpoint to be removed at every
# caller (the standalone pods' preStop pause).
ENDPOINT_REMOVAL_SECS = 5
# The app's own stop after its SIGTERM, a condition the component sets the app
# (k8s/components/proxy-sidecar/kustomization.yaml).
APP_STOP_SECS = 10
BASE_PROXY = ROOT / "k8s/base/proxy/deployment.yaml"

pytestmark = pytest.mark.skipif(not SIDECAR_OVERLAYS, reason="no overlay places the proxy as a sidecar")


def placement(overlay: str) -> dict:
    """The pod that carries the proxy, the proxy's container and environment, the app's
    container (the first of the pod), and the proxy config."""
    objs = rendered(overlay)
    deployment, ctr = proxy_container(objs, overlay)
    runtime = sources.dockerfile(IMAGES["migration-proxy"]["dockerfile"])[-1]
    text, _ = proxy_config_text(objs, overlay)
    pod = deployment["spec"]["template"]["spec"]
    return dict(
        objs=objs, deployment=deployment, template=deployment["spec"]["template"], pod=pod, ctr=ctr,
        env=effective_env(objs, ctr, sources.env_pairs(runtime)), app=pod["containers"][0],
        config=yaml.safe_load(text),
    )


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_proxy_is_a_native_sidecar_that_the_app_outlives(overlay):
    p = placement(overlay)
    ctr, pod, env = p["ctr"], p["pod"], p["env"]
    # Native: started before the app's containers, stopped after them, restarted.
    assert ctr.get("restartPolicy") == "Always", "an init container without restartPolicy Always blocks the pod's start"
    assert all(c["name"] != ctr["name"] for c in pod["containers"])
    # Istio's sidecar as a native one too, started before the proxy and stopped after it.
    notes = p["template"]["metadata"].get("annotations", {})
    assert notes.get("sidecar.istio.io/nativeSidecar") == "true", "Istio's sidecar must outlive the proxy's drain"

    # Every request the proxy holds is bound by its drain ...
    drain = int(env.get("PROXY_DRAIN_SECS") or binary("migration-proxy").env["PROXY_DRAIN_SECS"])
    vs = yaml.safe_load(VIRTUAL_SERVICE.read_text())
    timeouts = [istio_schema.go_duration(r["timeout"]) for r in vs["spec"]["http"] if "timeout" in r]
    timeouts.append(istio_schema.go_duration(p["config"].get("timeouts", {}).get("request", "15s")))
    assert max(timeouts) <= drain, f"a request may take {max(timeouts)}s, longer than the drain ({drain}s)"
    # ... and the app, stopped before the proxy, keeps serving it until then: its pause
    # covers the endpoint removal and the drain.
    app_pause = p["app"].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert app_pause >= ENDPOINT_REMOVAL_SECS + drain, (
        f"the app stops after {app_pause}s while the proxy may still send it requests for "
        f"{ENDPOINT_REMOVAL_SECS}s + {drain}s"
    )
    # The pod's grace covers the app's pause and stop, then the proxy's drain.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= app_pause + APP_STOP_SECS + drain, (
        f"grace {grace}s < the app's preStop {app_pause}s + its stop {APP_STOP_SECS}s + the proxy's drain {drain}s"
    )
    # Signalled only once the app has ended, the proxy has nothing to pause for.
    assert "preStop" not in ctr.get("lifecycle", {}), "a native sidecar's pause only eats the grace"


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_apps_service_reaches_the_proxys_client_port(overlay):
    p = placement(overlay)
    objs, ctr, pod, env = p["objs"], p["ctr"], p["pod"], p["env"]
    key, value = SIDECAR_LABEL
    labelled = [s for s in find(objs, "Service") if s["metadata"].get("labels", {}).get(key) == value]
    assert len(labelled) == 1, f"the component sends one Service to the proxy, found {len(labelled)}"
    (svc,) = labelled
    selected = [
        d["metadata"]["name"] for d in find(objs, "Deployment")
        if matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert selected == [p["deployment"]["metadata"]["name"]], selected

    _, listen = host_port(env["PROXY_LISTEN"])
    assert [q["containerPort"] for q in ctr["ports"]] == [listen], "the proxy declares its client port, and only it"
    port = svc["spec"]["ports"][0]
    reached, target = target_container(pod, port.get("targetPort", port["port"]))
    assert reached["name"] == ctr["name"] and target == listen, (
        f"Service {svc['metadata']['name']} port {port['port']} goes to {reached['name']}:{target}, "
        f"not to the proxy's PROXY_LISTEN port {listen}"
    )

    # One network namespace: no other container may use the proxy's ports, and the
    # legacy upstream is the app's port, not the proxy's own (a loop).
    _, admin = host_port(env["PROXY_ADMIN"])
    others = {q["containerPort"] for c in pod["containers"] for q in c.get("ports", [])}
    assert not {listen, admin} & others, f"ports {sorted({listen, admin} & others)} are the proxy's and the app's"
    legacy = [u for u in p["config"]["upstreams"].values() if u["role"] == "legacy"]
    assert all(host_port(u["address"])[1] not in (listen, admin) for u in legacy), (
        "the proxy would send the legacy's requests to itself"
    )


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_admin_api_stays_inside_the_pod(overlay):
    p = placement(overlay)
    objs, ctr, pod, template = p["objs"], p["ctr"], p["pod"], p["template"]
    host, admin = host_port(p["env"]["PROXY_ADMIN"])
    assert host in LOOPBACK, f"PROXY_ADMIN={p['env']['PROXY_ADMIN']}: reachable from outside the pod"
    labels = template["metadata"]["labels"]
    containers = pod["containers"] + pod.get("initContainers", [])
    assert all(q["containerPort"] != admin for c in containers for q in c.get("ports", [])), "the admin port is declared"
    for svc in find(objs, "Service"):
        if matches(svc["spec"]["selector"], labels):
            for q in svc["spec"]["ports"]:
                assert q.get("targetPort", q["port"]) != admin and q["port"] != admin, f"Service {svc['metadata']['name']}"
    for policy in find(objs, "NetworkPolicy"):
        if matches(policy["spec"]["podSelector"]["matchLabels"], labels):
            ports = {q.get("port") for rule in policy["spec"].get("ingress", []) for q in rule.get("ports", [])}
            assert admin not in ports, f"NetworkPolicy {policy['metadata']['name']} admits the admin port"
    for policy in find(objs, "AuthorizationPolicy", namespace=NAMESPACE):
        if matches(policy["spec"].get("selector", {}).get("matchLabels", {}), labels):
            ports = {
                int(q)
                for rule in policy["spec"].get("rules", []) for to in rule.get("to", [])
                for q in to["operation"].get("ports", [])
            }
            assert admin not in ports, f"AuthorizationPolicy {policy['metadata']['name']} admits the admin port"
    # No probe of the pod can reach it (the kubelet connects to the pod's address) ...
    for c in containers:
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(kind, {})
            for action in (probe[a] for a in ("httpGet", "tcpSocket", "grpc") if a in probe):
                assert port_of(c, action["port"]) != admin, f"{c['name']} {kind} targets the loopback-only admin port"
    # ... but Istio's agent, in the pod, fetches its metrics from localhost.
    assert int(template["metadata"]["annotations"]["prometheus.io/port"]) == admin


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_sidecar_runs_the_standalone_proxys_settings_and_files(overlay):
    p = placement(overlay)
    base = yaml.safe_load(BASE_PROXY.read_text())
    base_pod = base["spec"]["template"]["spec"]
    (base_ctr,) = base_pod["containers"]
    assert [e["name"] for e in p["ctr"]["env"]] == [e["name"] for e in base_ctr["env"]], "the standalone proxy's variables"

    def sources_of(pod: dict, ctr: dict) -> dict[str, object]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        out = {}
        for mount in ctr["volumeMounts"]:
            volume = volumes[mount["name"]]
            kind = next(k for k in ("configMap", "secret", "emptyDir") if k in volume)
            name = volume[kind].get("name", volume[kind].get("secretName")) if kind != "emptyDir" else None
            out[mount["mountPath"]] = (kind, name, bool(mount.get("readOnly")))
        return out

    assert sources_of(p["pod"], p["ctr"]) == sources_of(base_pod, base_ctr), "the standalone proxy's files, mounted alike"
    for name in ("PROXY_VIRTUAL_SERVICE", "PROXY_CONFIG", "PROXY_DRAIN_SECS", "PROXY_RELOAD_INTERVAL_MS"):
        assert p["env"][name] == next(e["value"] for e in base_ctr["env"] if e["name"] == name), name


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_mesh_admits_the_pods_that_carry_the_proxy(overlay):
    p = placement(overlay)
    objs, pod, template = p["objs"], p["pod"], p["template"]
    labels = template["metadata"]["labels"]
    assert labels.get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1], "the pods carrying the proxy are labelled for its objects"
    _, listen = host_port(p["env"]["PROXY_LISTEN"])

    # The mesh's callers reach the proxy's client port, and no other port of these pods
    # (the app's own port would bypass the proxy).
    policy = one(objs, "AuthorizationPolicy", "migration-proxy")["spec"]
    assert matches(policy["selector"]["matchLabels"], labels)
    assert policy["action"] == "ALLOW"
    assert {int(q) for rule in policy["rules"] for to in rule["to"] for q in to["operation"]["ports"]} == {listen}

    # The identity service admits the proxy's calls, which come under the app's identity
    # and from the app's pods, on the port its Service sends the new upstream to.
    (new,) = [host_port(u["address"]) for u in p["config"]["upstreams"].values() if u["role"] == "new"]
    identity = one(objs, "Service", new[0].split(".")[0])
    (target,) = [q.get("targetPort", q["port"]) for q in identity["spec"]["ports"] if q["port"] == new[1]]
    identity_pod = one(objs, "Deployment", identity["metadata"]["name"])["spec"]["template"]["spec"]
    rest_ports = {target_container(identity_pod, target)[1]}
    principal = f"cluster.local/ns/{NAMESPACE}/sa/{pod['serviceAccountName']}"
    authz = one(objs, "AuthorizationPolicy", "identity")["spec"]
    admitted = {
        int(q)
        for rule in authz["rules"] if any(principal in s["source"].get("principals", []) for s in rule.get("from", []))
        for to in rule.get("to", []) for q in to["operation"].get("ports", [])
    }
    assert rest_ports <= admitted, f"{principal} is not admitted to the identity service's REST port {sorted(rest_ports)}"
    netpol = one(objs, "NetworkPolicy", "identity")["spec"]
    assert any(
        "podSelector" in peer and matches(peer["podSelector"]["matchLabels"], labels)
        and rest_ports <= {q["port"] for q in rule.get("ports", [])}
        for rule in netpol["ingress"] for peer in rule["from"]
    ), "the identity service's NetworkPolicy does not admit the pods carrying the proxy"

    # The app clients' traffic is balanced over the proxies: a pod is ejected on the
    # proxy's own failures (502-504) only, not on a 5xx the identity service answered.
    svc_names = {s["metadata"]["name"] for s in find(objs, "Service") if matches(s["spec"]["selector"], labels)}
    for rule in find(objs, "DestinationRule"):
        if rule["spec"]["host"].split(".")[0] in svc_names:
            outlier = rule["spec"]["trafficPolicy"]["outlierDetection"]
            assert "consecutive5xxErrors" not in outlier, rule["metadata"]["name"]
            assert outlier.get("consecutiveGatewayErrors"), rule["metadata"]["name"]


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_the_tcp_probes_fail_when_the_proxy_stops_being_ready(overlay, tmp_path):
    """The real binary on the placement's files: its client port accepts once it is up,
    and refuses from SIGTERM on, while it still drains a request (as /readyz turns 503):
    the sidecar's TCP probes say what its loopback-only /readyz would."""
    proxy = built_binary("migration-proxy", ["proxy"])
    if proxy is None:
        pytest.skip("no migration-proxy built from the current sources (cargo build -p migration-proxy)")
    p = placement(overlay)
    # The app: a listener that takes connections and never answers, so that a request
    # stays in flight through the drain.
    app = socket.socket()
    app.bind(("127.0.0.1", 0))
    app.listen(16)
    config = p["config"]
    for upstream in config["upstreams"].values():
        if upstream["role"] == "legacy":
            upstream["address"] = f"127.0.0.1:{app.getsockname()[1]}"
    config["admin_token"] = "token-of-the-secret-store"
    routing = one(p["objs"], "ConfigMap", "member-api-virtualservice")["data"]["virtualservice-member-api.yaml"]
    process = start_proxy(proxy, tmp_path, yaml.safe_dump(config), routing, drain_secs=10, log_format="json")
    try:
        listen = None
        for line in process.stderr:
            if "listening" in line:
                listen = host_port(json.loads(line)["listen"])
                break
        assert listen, f"the proxy did not start (exit {process.wait(timeout=10)})"
        socket.create_connection(listen, timeout=2).close()  # startup, readiness, liveness pass
        # A request the `default` rule sends to the legacy, left in flight.
        held = socket.create_connection(listen, timeout=2)
        held.sendall(b"GET /up HTTP/1.1\r\nHost: legacy-api\r\n\r\n")
        app.settimeout(5)
        in_flight, _ = app.accept()
        process.terminate()
        refused_while_draining = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(listen, timeout=1).close()
            except ConnectionRefusedError:
                refused_while_draining = process.poll() is None
                break
            time.sleep(0.05)
        assert refused_while_draining, "the client port still accepted (or the proxy had already exited) after SIGTERM"
        # The app's end of the request closes: the drain has nothing left, the proxy exits.
        in_flight.close()
        held.close()
        assert process.wait(timeout=15) == 0
    finally:
        app.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
