"""The cluster manifests (k8s/, istio/) and the Dockerfiles, checked without a cluster:

1. every overlay renders with `kubectl kustomize`;
2. every Kubernetes object passes the Kubernetes schemas (kubernetes-validate, strict),
   every Istio object passes Istio's CRD schemas (istio_schema.py);
3. the manifests, the Dockerfiles and the binaries agree: environment names, ports,
   entrypoints, probes, users, drain and grace periods, Secret mounts, selectors, the
   mesh policies' targets (the proxy's files: test_proxy_files.py);
4. checkov finds nothing that is not fixed or justified in place (test_checkov.py).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import kubernetes_validate
import pytest
import yaml

import istio_schema
import sources
from manifests import (
    ALL_INTERFACES, IMAGES, KUBERNETES_VERSION, LOOPBACK, LOOPBACK_LISTENERS, NAMESPACE,
    OVERLAYS, PLACEMENTS, ROOT, STANDALONE_PROXY_OBJECTS, VIRTUAL_SERVICE, binary, container,
    effective_env, find, host_port, long_running, matches, mounted_file, one, port_of,
    proxy_config_text, proxy_container, rendered, secret_data, target_container,
    workload_container,
)


# --- 1 and 2: rendering and schemas -----------------------------------------------------


def test_the_overlays_are_there():
    assert {"local", "production", "sidecar"} <= set(OVERLAYS), OVERLAYS
    assert set(OVERLAYS) == set(PLACEMENTS), "manifests.PLACEMENTS says where each overlay's proxy is"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(overlay):
    objs = rendered(overlay)
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for kind, name in [
        ("Deployment", "identity"), ("Service", "identity"),
        ("HorizontalPodAutoscaler", "identity"), ("PodDisruptionBudget", "identity"),
        ("ServiceAccount", "identity"),
        ("ConfigMap", "member-api-virtualservice"), ("PodMonitor", "migration-proxy"),
        ("AuthorizationPolicy", "migration-proxy"),
        ("PeerAuthentication", "default"), ("RequestAuthentication", "member-jwt"),
    ]:
        one(objs, kind, name)
    for kind in ("DestinationRule", "AuthorizationPolicy"):
        assert find(objs, kind), kind
    # The proxy, where the overlay places it, with its own objects or none.
    proxy_container(objs, overlay)
    for kind, name in STANDALONE_PROXY_OBJECTS:
        if PLACEMENTS[overlay] == "standalone":
            one(objs, kind, name)
        else:
            assert not find(objs, kind, name), f"{kind} {name} belongs to the standalone placement"
    for o in objs:
        if o["kind"] not in ("Namespace",):
            assert o["metadata"].get("namespace"), f"{o['kind']} {o['metadata']['name']} has no namespace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_objects_pass_the_kubernetes_schemas(overlay):
    failures = []
    for o in rendered(overlay):
        if istio_schema.is_custom(o):
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            failures.append(f"{o['kind']} {o['metadata']['name']}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{o['kind']} {o['metadata']['name']}: no Kubernetes schema ({o['apiVersion']})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_istio_objects_pass_the_istio_crd_schemas(overlay):
    objs = rendered(overlay)
    istio = [o for o in objs if istio_schema.is_istio(o)]
    # The VirtualService travels as the proxy's ConfigMap: validated as an object too.
    routing = one(objs, "ConfigMap", "member-api-virtualservice")["data"]
    istio += [d for text in routing.values() for d in yaml.safe_load_all(text) if d]
    failures = [f"{o['kind']} {o['metadata']['name']}: {e}" for o in istio for e in istio_schema.errors(o)]
    assert not failures, "\n".join(failures)
    for o in istio:  # the current, stored version of each kind
        assert istio_schema.crds()[(o["apiVersion"], o["kind"])].get("storage"), o["apiVersion"]


def test_istio_files_pass_the_istio_crd_schemas():
    failures = []
    for path in sorted((ROOT / "istio").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for o in yaml.safe_load_all(path.read_text()):
            if o:
                failures += [f"{path.name}: {o['kind']} {o['metadata']['name']}: {e}" for e in istio_schema.errors(o)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("copy", istio_schema.CRD_FILES, ids=lambda p: p.name)
def test_the_crd_copy_is_the_shared_one(copy):
    shared = ROOT.parent / "shared/schemas" / copy.name
    if not shared.exists():
        pytest.skip(f"{shared} is not beside the repository")
    assert copy.read_bytes() == shared.read_bytes(), (
        f"tests/manifests/{copy.name} differs from {shared}: copy it again"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitoring_objects_pass_the_prometheus_operator_crd_schemas(overlay):
    objs = rendered(overlay)
    monitoring = [o for o in objs if istio_schema.is_monitoring(o)]
    failures = [f"{o['kind']} {o['metadata']['name']}: {e}" for o in monitoring for e in istio_schema.errors(o)]
    assert not failures, "\n".join(failures)
    assert len(find(objs, "PrometheusRule")) == 1
    # Each workload is scraped (the proxy wherever the overlay places it: its own pods or
    # the legacy app's), on the endpoint where Istio merges its metrics (mTLS stays strict
    # on its own ports), and says there which of its listeners serves them: Istio's agent
    # fetches them from localhost, inside the pod, so a listener on the pod's loopback
    # serves as well as one on every interface.
    deployments = find(objs, "Deployment")
    for workload in ("migration-proxy", "identity"):
        monitor = one(objs, "PodMonitor", workload)
        deployment, ctr = workload_container(objs, overlay, workload)
        template = deployment["spec"]["template"]
        selected = [
            d["metadata"]["name"] for d in deployments
            if matches(monitor["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert selected == [deployment["metadata"]["name"]], (workload, selected)
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        assert (endpoint.get("portNumber"), endpoint.get("path")) == (15020, "/stats/prometheus"), workload
        notes = template["metadata"].get("annotations", {})
        assert notes.get("prometheus.io/scrape") == "true", workload
        runtime = sources.dockerfile(IMAGES[workload]["dockerfile"])[-1]
        env = effective_env(objs, ctr, sources.env_pairs(runtime))
        listeners = {host_port(env[name])[1] for name in IMAGES[workload]["listen"]}
        assert int(notes.get("prometheus.io/port", 0)) in listeners, (workload, listeners)
        assert notes.get("prometheus.io/path") == "/metrics", workload
        assert "/metrics" in binary(workload).routes(IMAGES[workload]["route_crates"]), workload


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grafana_board_is_loadable_by_the_dashboard_sidecar(overlay):
    board_map = one(rendered(overlay), "ConfigMap", "member-migration-dashboard")
    assert board_map["metadata"]["labels"].get("grafana_dashboard") == "1"
    (text,) = board_map["data"].values()
    board = json.loads(text)
    assert board["uid"] and board["title"]
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert exprs and all(e.strip() for e in exprs)
    assert {p["id"] for p in board["panels"]} == set(range(1, len(board["panels"]) + 1))
    assert any("proxy_guard_aborts_total" in a["expr"] for a in board["annotations"]["list"])


def test_the_crd_check_refuses_what_prometheus_operator_refuses():
    rule = yaml.safe_load((ROOT / "k8s/base/monitoring/prometheusrule.yaml").read_text())
    rule["spec"]["groups"][1]["rules"][0]["severity"] = "page"
    rule["spec"]["groups"][0]["interval"] = "5 minutes"
    found = "\n".join(istio_schema.errors(rule))
    for expected in ("'severity' was unexpected", "interval"):
        assert expected in found, found


def test_the_schema_check_refuses_what_istio_refuses():
    vs = yaml.safe_load(VIRTUAL_SERVICE.read_text())
    vs["spec"]["http"][0]["timeout"] = "5 seconds"
    vs["spec"]["http"][1]["retries"]["attempts"] = "two"
    vs["spec"]["http"][0]["route"][0]["wieght"] = 1
    found = "\n".join(istio_schema.errors(vs))
    for expected in ("timeout: must be a valid duration", "'two' is not of type 'integer'", "'wieght' was unexpected"):
        assert expected in found, found


# --- 3: the images, the binaries and the manifests agree ---------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_builds_and_runs_the_binary(image):
    spec, bin_ = IMAGES[image], binary(image)
    stages = sources.dockerfile(spec["dockerfile"])
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    build, runtime = stages[0], stages[-1]
    rust_version = sources.workspace()["workspace"]["package"]["rust-version"]
    assert re.fullmatch(rf"rust:{re.escape(rust_version)}(\.\d+)?-bookworm", build.image), (
        f"builder {build.image} is not the workspace's rust-version {rust_version}"
    )
    runs = " ".join(build.all("RUN"))
    # The images ship the `production` profile (Cargo.toml: fat LTO).
    assert re.search(rf"cargo build --profile production --locked -p {re.escape(bin_.package)}(\s|$)", runs), runs
    assert f"target/production/{bin_.name}" in runs
    assert runtime.image in ("gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim"), runtime.image
    assert any(f"--from={build.name}" in c for c in runtime.all("COPY")), "the runtime stage copies the build's output"
    entrypoint = sources.exec_form(runtime.last("ENTRYPOINT"))
    assert entrypoint and PurePosixPath(entrypoint[0]).name == bin_.name, entrypoint
    cmd = sources.exec_form(runtime.last("CMD")) or []
    if bin_.subcommands:
        assert (entrypoint[1:] + cmd)[:1] == ["serve"], "the image serves by default"
        assert "serve" in bin_.subcommands
    else:
        assert entrypoint[1:] + cmd == [], "the binary takes no subcommand"
    user = runtime.last("USER")
    assert user and user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, f"USER {user}: numeric, not root"
    unknown = set(sources.env_pairs(runtime)) - set(bin_.env)
    assert not unknown, f"ENV names the binary does not read: {unknown}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("image", IMAGES)
def test_deployment_matches_image_and_binary(overlay, image):
    spec, bin_ = IMAGES[image], binary(image)
    objs = rendered(overlay)
    runtime = sources.dockerfile(spec["dockerfile"])[-1]
    deployment, ctr = workload_container(objs, overlay, image)
    pod = deployment["spec"]["template"]["spec"]
    placement = PLACEMENTS[overlay] if image == "migration-proxy" else "standalone"

    # Entrypoint: the image's, with its subcommand.
    assert "command" not in ctr, "the image's ENTRYPOINT is the binary"
    args = ctr.get("args") or sources.exec_form(runtime.last("CMD")) or []
    if bin_.subcommands:
        assert args[:1] == ["serve"], args
    else:
        assert args == [], args

    # Environment: only names the binary reads. Listeners: on every interface, on the
    # ports the container declares; or, where the placement keeps one inside the pod
    # (the sidecar's admin API), on the pod's loopback, declared nowhere. Together, the
    # ports that the image exposes.
    env = effective_env(objs, ctr, sources.env_pairs(runtime))
    unknown = {n for n in env if n not in bin_.env}
    assert not unknown, f"variables the binary does not read: {sorted(unknown)}"
    exposed = sources.exposed_ports(runtime)
    container_ports = {p["containerPort"] for p in ctr["ports"]}
    public, local = set(), set()
    for name in spec["listen"]:
        assert name in bin_.env, name
        host, port = host_port(env[name])
        if name in LOOPBACK_LISTENERS[placement]:
            assert host in LOOPBACK, f"{name}={env[name]}: must stay inside the pod, on its loopback"
            local.add(port)
        else:
            assert host in ALL_INTERFACES, f"{name}={env[name]}: the pod's address must be reachable"
            public.add(port)
    assert public == container_ports and not public & local, (public, local, container_ports)
    assert public | local == exposed, (public, local, exposed)

    # Probes on ports the kubelet reaches (a listener on every interface: the kubelet, or
    # Istio's agent for it, connects to the pod's address), on paths and services that
    # exist.
    routes = bin_.routes(spec["route_crates"])
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = ctr.get(kind)
        if probe is None:
            assert kind == "startupProbe", f"{image} has no {kind}"
            continue
        if "httpGet" in probe:
            port = port_of(ctr, probe["httpGet"]["port"])
            assert port in public, f"{kind}: port {port} is not a listener the kubelet reaches ({sorted(public)})"
            served_on = host_port(env[spec["routes_on"]])[1]
            assert port == served_on, f"{kind}: port {port} does not serve the binary's routes ({spec['routes_on']})"
            assert probe["httpGet"]["path"] in routes, f"{kind} {probe['httpGet']['path']} is not served"
        elif "tcpSocket" in probe:
            port = port_of(ctr, probe["tcpSocket"]["port"])
            assert port in public, f"{kind}: port {port} is not a listener the kubelet reaches ({sorted(public)})"
        elif "grpc" in probe:
            assert probe["grpc"]["port"] in public
            package, _, service = probe["grpc"]["service"].rpartition(".")
            proto = "\n".join(p.read_text() for p in (ROOT / "proto").rglob("*.proto"))
            assert f"package {package};" in proto and f"service {service} " in proto, probe["grpc"]
        else:
            pytest.fail(f"{kind}: expected an HTTP, TCP or gRPC probe")
    if placement == "standalone":
        assert ctr["readinessProbe"].get("httpGet", {}).get("path") == "/readyz"
    else:  # /readyz is on the loopback: TCP probes, which test_sidecar.py holds to their meaning
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert "tcpSocket" in ctr[kind], f"{kind}: the sidecar's probes connect to its client port"

    # The user of the image; nothing writable but emptyDirs.
    security = {**pod.get("securityContext", {}), **ctr.get("securityContext", {})}
    assert security["runAsUser"] == int(runtime.last("USER").split(":")[0])
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in ctr.get("volumeMounts", []):
        if not mount.get("readOnly"):
            assert "emptyDir" in volumes[mount["name"]], f"{mount['mountPath']} is writable and not an emptyDir"
    assert "requests" in ctr["resources"] and "limits" in ctr["resources"]

    # Shutdown: the grace period covers the preStop pause and the drain; so does the
    # Istio sidecar's drain. (The proxy as a sidecar stops after the app, whose pause
    # covers its work: test_sidecar.py.)
    pause = ctr.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    drain = int(env.get(spec["drain"]) or bin_.env[spec["drain"]])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pause + drain, f"grace {grace}s <= preStop {pause}s + drain {drain}s"
    if placement == "sidecar":
        return
    sidecar = yaml.safe_load(deployment["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
    sidecar_drain = istio_schema.go_duration(sidecar["terminationDrainDuration"])
    assert pause + drain <= sidecar_drain < grace, (pause, drain, sidecar_drain, grace)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_policies_select_the_pods(overlay):
    objs = rendered(overlay)
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in find(objs, "Deployment")}
    for svc in find(objs, "Service"):
        selected = [n for n, t in pods.items() if matches(svc["spec"]["selector"], t["metadata"]["labels"])]
        assert len(selected) == 1, f"Service {svc['metadata']['name']} selects {selected}"
        for p in svc["spec"]["ports"]:  # a port that a container of the pod declares
            target_container(pods[selected[0]]["spec"], p.get("targetPort", p["port"]))
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in find(objs, kind):
            sel = o["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert any(matches(sel, t["metadata"]["labels"]) for t in pods.values()), f"{kind} {o['metadata']['name']}"
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        one(objs, target["kind"], target["name"])
        assert "replicas" not in one(objs, target["kind"], target["name"])["spec"], "the HPA owns the replica count"
    accounts = {sa["metadata"]["name"] for sa in find(objs, "ServiceAccount")}
    for name, template in pods.items():
        assert template["spec"]["serviceAccountName"] in accounts

    # Istio: policies of the namespace select our pods, name our accounts and our ports.
    for o in objs:
        if not istio_schema.is_istio(o) or o["metadata"]["namespace"] != NAMESPACE:
            continue
        spec = o["spec"]
        selected = list(pods.values())
        if "selector" in spec:
            selected = [t for t in pods.values() if matches(spec["selector"]["matchLabels"], t["metadata"]["labels"])]
            assert selected, f"{o['kind']} {o['metadata']['name']} selects no pod"
        ports = {p["containerPort"] for t in selected for c in long_running(t["spec"]) for p in c.get("ports", [])}
        if o["kind"] == "PeerAuthentication":
            assert spec["mtls"]["mode"] == "STRICT"
            assert {int(p) for p in spec.get("portLevelMtls", {})} <= ports
        if o["kind"] == "AuthorizationPolicy":
            for rule in spec.get("rules", []):
                for to in rule.get("to", []):
                    assert {int(p) for p in to["operation"].get("ports", [])} <= ports, to
                for src in rule.get("from", []):
                    for principal in src["source"].get("principals", []):
                        m = re.fullmatch(rf"cluster\.local/ns/{NAMESPACE}/sa/([a-z0-9-]+)", principal)
                        if m:
                            assert m.group(1) in accounts, principal
        if o["kind"] == "DestinationRule":
            host = spec["host"]
            svc_name = host.split(".")[0]
            assert host == f"{svc_name}.{NAMESPACE}.svc.cluster.local", host
            # The legacy's Service is deployed elsewhere, but in the example of the sidecar
            # placement (a stand-in).
            found = find(objs, "Service", svc_name)
            assert found or svc_name == "legacy-api", f"DestinationRule {o['metadata']['name']}: no Service {svc_name}"
            for svc in found:
                for subset in spec.get("subsets", []):
                    labels = {**svc["spec"]["selector"], **subset["labels"]}
                    assert any(matches(labels, t["metadata"]["labels"]) for t in pods.values()), subset
            assert spec["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
            assert spec["trafficPolicy"]["outlierDetection"]
        if o["kind"] == "VirtualService":
            # The proxy's upstreams: the proxy decides about retries, its sidecar never.
            for rule in spec["http"]:
                assert rule.get("retries", {}).get("attempts") == 0, o["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_request_authentication_names_the_identity_service(overlay):
    objs = rendered(overlay)
    _, ctr = container(objs, "identity")
    env = effective_env(objs, ctr, sources.env_pairs(sources.dockerfile(IMAGES["identity"]["dockerfile"])[-1]))
    defaults = binary("identity").env
    (rule,) = one(objs, "RequestAuthentication", "member-jwt")["spec"]["jwtRules"]
    assert rule["issuer"] == env.get("IDENTITY_JWT_ISSUER", defaults["IDENTITY_JWT_ISSUER"])
    assert rule["audiences"] == [env.get("IDENTITY_JWT_AUDIENCE", defaults["IDENTITY_JWT_AUDIENCE"])]
    m = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)(/\S*)", rule["jwksUri"])
    assert m, rule["jwksUri"]
    svc = one(objs, "Service", m.group(1))
    assert svc["metadata"]["namespace"] == m.group(2)
    (port,) = [p for p in svc["spec"]["ports"] if p["port"] == int(m.group(3))]
    assert port["name"] == "http" and port_of(ctr, port["targetPort"]) == port["port"]
    assert m.group(4) in binary("identity").routes(IMAGES["identity"]["route_crates"])
    assert rule.get("forwardOriginalToken") is True
    assert {"header": "x-member-id", "claim": "sub"} in rule["outputClaimToHeaders"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_identity_secrets_and_database(overlay):
    objs = rendered(overlay)
    deployment, ctr = container(objs, "identity")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in ctr.get("env", [])}
    db = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    url = (secret_data(objs, db["name"]) or {}).get(db["key"])
    hpa = one(objs, "HorizontalPodAutoscaler", "identity")["spec"]
    if url is not None and url.startswith("sqlite:"):
        # An embedded database lives in one pod's emptyDir: one replica.
        assert hpa["maxReplicas"] == 1
        data_dir = effective_env(objs, ctr, {})["IDENTITY_DATA_DIR"]
        assert url.startswith(f"sqlite://{data_dir}/"), url
    if overlay != "local":  # every overlay but the laptop's runs as production does
        assert url is None, "production's database URL comes from the secret store, not from git"
        assert hpa["minReplicas"] >= 3
        assert "LEGACY_DATABASE_URL" in env, "writes go through to the legacy database until cutover"
        key = env["IDENTITY_JWT_SIGNING_KEY"]["value"]
        volume, item = mounted_file(objs, pod, ctr, key)
        assert "secret" in volume and item == "signing.pem", volume
    for item in env.values():
        assert "value" not in item or "://" not in item["value"], f"{item['name']}: a URL belongs in a Secret"



def test_dockerignore_keeps_the_workspace():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["Cargo.toml", "Cargo.lock", *sources.workspace()["workspace"]["members"]]
    for path in needed:
        for pattern in patterns:
            if pattern.startswith("!"):
                continue
            bare = pattern.removeprefix("**/")
            assert not (path == bare or path.startswith(bare + "/") or path.endswith("/" + bare)), (
                f".dockerignore {pattern!r} drops {path}, which the build needs"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_identity_services_trusted_hops_follow_the_proxys_placement(overlay):
    """Wherever the proxy runs, the identity service finds the client in X-Forwarded-For
    where the chain in front of it put it: the hops the proxy trusts (the mesh's edge in
    production, none on a laptop cluster), plus the entry the proxy appends itself (its
    peer), unless that peer is its pod's own mesh sidecar, a local hop it does not
    record. An identity service that counts otherwise would throttle and record every
    client by a proxy's address, or by an address a client wrote (found so: the laptop
    overlay's identity service trusted 2 hops behind a proxy that trusts none)."""
    objs = rendered(overlay)
    _, ctr = container(objs, "identity")
    env = effective_env(objs, ctr, sources.env_pairs(sources.dockerfile(IMAGES["identity"]["dockerfile"])[-1]))
    assert env.get("IDENTITY_TRUST_FORWARDED_FOR") == "true", "the identity service sits behind the mesh's edge"
    text, _ = proxy_config_text(objs, overlay)
    client_address = yaml.safe_load(text).get("client_address", {})
    proxy_hops = client_address.get("trusted_hops", 0)
    appended = 0 if client_address.get("peer_is_local_sidecar") else 1
    assert int(env["IDENTITY_TRUSTED_PROXY_HOPS"]) == proxy_hops + appended, (
        f"{overlay} ({PLACEMENTS[overlay]}): the identity service trusts "
        f"{env['IDENTITY_TRUSTED_PROXY_HOPS']} hops; the proxy trusts {proxy_hops} and appends {appended}"
    )
    if PLACEMENTS[overlay] == "sidecar" or proxy_hops:
        # Behind the mesh's edge, in a pod with Istio's sidecar: the proxy's peer is that
        # sidecar, whose 127.0.0.6 names no hop the identity service could use.
        assert client_address.get("peer_is_local_sidecar") is True, overlay
