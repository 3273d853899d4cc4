"""The migration proxy's files in the cluster, wherever the overlay places the proxy: the
VirtualService is istio/'s very file, mounted so that it hot-reloads; the proxy config
fits the proxy's settings, the VirtualService's hosts and the placement's upstreams; and,
when a built binary is at hand, the proxy starts on both."""

from __future__ import annotations


import pytest
import yaml

import sources
from manifests import (
    OVERLAYS, PLACEMENTS, VIRTUAL_SERVICE, built_binary, find, host_port, mounted_file, one,
    proxy_config_text, proxy_container, rendered, start_proxy,
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_proxy_routing_is_the_istio_file_and_hot_reloads(overlay):
    objs = rendered(overlay)
    deployment, ctr = proxy_container(objs, overlay)
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in ctr["env"]}

    volume, key = mounted_file(objs, pod, ctr, env["PROXY_VIRTUAL_SERVICE"])
    configmap = one(objs, "ConfigMap", volume["configMap"]["name"])
    assert configmap["data"][key] == VIRTUAL_SERVICE.read_text(), "the proxy must read istio/'s very file"
    assert configmap["metadata"]["name"] == "member-api-virtualservice", "a hash suffix would restart, not reload"
    member_api = yaml.safe_load(VIRTUAL_SERVICE.read_text())["spec"]["hosts"]
    for vs in find(objs, "VirtualService"):
        assert not set(vs["spec"]["hosts"]) & set(member_api), (
            f"VirtualService {vs['metadata']['name']}: applied to the mesh, the member API's routing would bypass the proxy"
        )

    volume, key = mounted_file(objs, pod, ctr, env["PROXY_CONFIG"])
    assert key == "proxy.yaml" and volume["secret"]["secretName"] == "migration-proxy-config"
    text, from_store = proxy_config_text(objs, overlay)
    check_proxy_config(objs, yaml.safe_load(text), needs_token=not from_store, placement=PLACEMENTS[overlay], pod=pod)


def check_proxy_config(objs: list[dict], config: dict, needs_token: bool, placement: str, pod: dict):
    structs = sources.rust_structs("proxy/routing")
    errors = sources.check_against_struct(config, "ProxyConfig", structs, "proxy config")
    assert not errors, "\n".join(errors)
    vs = yaml.safe_load(VIRTUAL_SERVICE.read_text())
    assert config.get("virtual_service", vs["metadata"]["name"]) == vs["metadata"]["name"]
    hosts = set()
    for rule in vs["spec"]["http"]:
        hosts |= {r["destination"]["host"] for r in rule["route"]}
        hosts |= {rule["mirror"]["host"]} if "mirror" in rule else set()
        hosts |= {m["destination"]["host"] for m in rule.get("mirrors", [])}
    assert set(config["upstreams"]) == hosts, "every destination host of the VirtualService, and only those"
    roles = {u["role"] for u in config["upstreams"].values()}
    assert roles == {"legacy", "new"}, roles
    for host, upstream in config["upstreams"].items():
        address_host, port = host_port(upstream["address"])
        if placement == "sidecar" and upstream["role"] == "legacy":
            # Beside the app: its container, the first of the pod, on the pod's loopback.
            app_ports = {p["containerPort"] for p in pod["containers"][0].get("ports", [])}
            assert address_host == "127.0.0.1" and port in app_ports, (
                f"{host}: the legacy is the app container beside the proxy, 127.0.0.1 on one of its ports {sorted(app_ports)}"
            )
            continue
        assert address_host == host, f"{host}: the mesh routes by the Service name"
        svc = find(objs, "Service", host.split(".")[0])
        assert svc or upstream["role"] == "legacy", f"{host}: no such Service"  # the legacy's is deployed elsewhere
        if svc:  # a port of the Service, and its HTTP one: the proxy speaks HTTP to it
            (entry,) = [p for p in svc[0]["spec"]["ports"] if p["port"] == port] or [None]
            assert entry, f"{host}: port {port} is no port of Service {svc[0]['metadata']['name']}"
            assert entry.get("appProtocol", entry.get("name")) == "http", f"{host}:{port} is not the Service's HTTP port"
    assert "listen" not in config and "admin_listen" not in config, "the Deployment sets the listeners"
    token = config.get("admin_token")
    if needs_token:
        assert token and len(token) >= int(sources.rust_const("proxy/routing", "MIN_ADMIN_TOKEN_LEN"))
    else:
        assert token is None, "the token comes from the secret store, not from git"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_proxy_binary_accepts_its_files(overlay, tmp_path):
    """The real parser on the cluster's files: the proxy starts on them (then stops)."""
    proxy = built_binary("migration-proxy", ["proxy"])
    if proxy is None:
        pytest.skip("no migration-proxy built from the current sources (cargo build -p migration-proxy)")
    objs = rendered(overlay)
    text, from_store = proxy_config_text(objs, overlay)
    if from_store:  # the secret store adds the token to the overlay's file
        text += "\nadmin_token: token-of-the-secret-store\n"
    routing = one(objs, "ConfigMap", "member-api-virtualservice")["data"]["virtualservice-member-api.yaml"]
    process = start_proxy(proxy, tmp_path, text, routing, drain_secs=0, log_format="text")
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "listening" in line:
                break
        else:
            process.wait(timeout=10)
            pytest.fail(f"the proxy refused the {overlay} files (exit {process.returncode}):\n{''.join(lines)}")
    finally:
        process.terminate()
        process.wait(timeout=10)
