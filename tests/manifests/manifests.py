"""The rendered overlays and what the tests look up in them, shared by the test files:
`kubectl kustomize` of each overlay (once per run), where each overlay places the
migration proxy, lookups of objects, containers, environments, mounted files and ports,
and the two images' facts."""

from __future__ import annotations

import base64
import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import sources
from sources import ROOT

KUBERNETES_VERSION = "1.30"
OVERLAYS = sorted(p.parent.name for p in (ROOT / "k8s/overlays").glob("*/kustomization.yaml"))
VIRTUAL_SERVICE = ROOT / "istio/virtualservice-member-api.yaml"
NAMESPACE = "members"

# Where each overlay places the migration proxy (the README compares the placements):
# - "standalone": a Deployment of its own with its autoscaler, disruption budget, service
#   account and the Service member-api (k8s/base/proxy);
# - "sidecar": a native sidecar of the legacy app's pods (k8s/components/proxy-sidecar),
#   none of those objects.
# Every overlay is listed: a new one says where its proxy is.
PLACEMENTS = {"local": "standalone", "production": "standalone", "sidecar": "sidecar"}
# The standalone proxy's own objects, which the sidecar placement must not render.
STANDALONE_PROXY_OBJECTS = [
    ("Deployment", "migration-proxy"), ("Service", "member-api"),
    ("HorizontalPodAutoscaler", "migration-proxy"), ("PodDisruptionBudget", "migration-proxy"),
    ("ServiceAccount", "migration-proxy"), ("NetworkPolicy", "migration-proxy"),
    ("DestinationRule", "member-api"),
]
# The label the sidecar component selects the app's Deployment and Service by, and puts
# on the pods that carry the proxy.
SIDECAR_LABEL = ("member-migration/proxy-sidecar", "enabled")

# The two images: their Dockerfile, crate, Deployment, the variables that set their
# listeners (and the one that serves their own HTTP routes) and their drain after SIGTERM.
IMAGES = {
    "identity": dict(
        dockerfile="services/identity/Dockerfile",
        crate="services/identity/server",
        route_crates=["services/identity/rest"],
        listen=["IDENTITY_HTTP_ADDR", "IDENTITY_GRPC_ADDR"],
        # The listener that serves the HTTP routes of route_crates.
        routes_on="IDENTITY_HTTP_ADDR",
        drain="IDENTITY_SHUTDOWN_GRACE_SECS",
    ),
    "migration-proxy": dict(
        dockerfile="proxy/Dockerfile",
        crate="proxy/server",
        route_crates=["proxy/server"],
        listen=["PROXY_LISTEN", "PROXY_ADMIN"],
        # The admin API; the client listener forwards every path to an upstream.
        routes_on="PROXY_ADMIN",
        drain="PROXY_DRAIN_SECS",
    ),
}



# --- rendering ------------------------------------------------------------------------


def kustomize_command() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail("neither kubectl nor kustomize is installed (tests/setup.sh installs kubectl)")


@functools.lru_cache(maxsize=None)
def rendered_text(overlay: str) -> str:
    run = subprocess.run(
        [*kustomize_command(), str(ROOT / "k8s/overlays" / overlay)], capture_output=True, text=True
    )
    assert run.returncode == 0, f"kustomize {overlay}:\n{run.stderr}"
    return run.stdout


def rendered(overlay: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered_text(overlay)) if d]


def find(objs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objs
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(objs: list[dict], name: str) -> tuple[dict, dict]:
    deployment = one(objs, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    return deployment, next(c for c in pod["containers"] if c["name"] == name)


def sidecars(pod: dict) -> list[dict]:
    """The pod's native sidecars: init containers that run for the pod's life."""
    return [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]


def long_running(pod: dict) -> list[dict]:
    """Every container that serves while the pod runs: its containers and its sidecars."""
    return pod["containers"] + sidecars(pod)


def proxy_container(objs: list[dict], overlay: str) -> tuple[dict, dict]:
    """The Deployment that runs the migration proxy, and the proxy's container: its own
    Deployment's, or the sidecar in the legacy app's Deployment."""
    if PLACEMENTS[overlay] == "standalone":
        return container(objs, "migration-proxy")
    found = [
        (d, c)
        for d in find(objs, "Deployment")
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        if c["name"] == "migration-proxy"
    ]
    assert len(found) == 1, f"expected the proxy in one Deployment's init containers, found {len(found)}"
    return found[0]


def workload_container(objs: list[dict], overlay: str, image: str) -> tuple[dict, dict]:
    """The Deployment and container that run `image` (a key of IMAGES) in the overlay."""
    return proxy_container(objs, overlay) if image == "migration-proxy" else container(objs, image)


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def effective_env(objs: list[dict], ctr: dict, image_env: dict[str, str]) -> dict[str, str | dict]:
    """The container's environment: image ENV, then envFrom ConfigMaps, then env."""
    env: dict[str, str | dict] = dict(image_env)
    for source in ctr.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"envFrom {source}: only ConfigMaps are expected"
        env.update(one(objs, "ConfigMap", ref["name"])["data"])
    for item in ctr.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def secret_data(objs: list[dict], name: str) -> dict[str, str] | None:
    """A rendered Secret's decoded data; None when the overlay expects it from outside."""
    found = find(objs, "Secret", name)
    if not found:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (found[0].get("data") or {}).items()}
    data.update(found[0].get("stringData") or {})
    return data


def mounted_file(objs: list[dict], pod: dict, ctr: dict, path: str) -> tuple[dict, str]:
    """The volume and the key that a file path of the container comes from."""
    for mount in ctr.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert "subPath" not in mount, f"{path}: a subPath mount is never updated in place"
            return volume, path[len(prefix):]
    pytest.fail(f"{path} is not on a mounted volume")


def port_of(ctr: dict, port) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in ctr["ports"] if p.get("name") == port]
    assert found, f"port {port!r} is not a named port of {ctr['name']}"
    return found[0]


def target_container(pod: dict, target) -> tuple[dict, int]:
    """The container, and its port, that a Service's targetPort reaches in `pod`: a port
    name or number that one of its long-running containers declares."""
    found = [
        (c, p["containerPort"])
        for c in long_running(pod)
        for p in c.get("ports", [])
        if target in (p.get("name"), p["containerPort"])
    ]
    assert len(found) == 1, f"targetPort {target!r} is declared by {len(found)} containers of the pod, not one"
    return found[0]


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# Listener hosts: every interface of the pod, or its loopback only.
ALL_INTERFACES = ("0.0.0.0", "::")
LOOPBACK = ("127.0.0.1", "::1")
# The listeners each placement keeps on the pod's loopback: the sidecar's admin API,
# which only `kubectl port-forward` and Istio's agent (metrics) reach, from inside the pod.
LOOPBACK_LISTENERS = {"standalone": set(), "sidecar": {"PROXY_ADMIN"}}


def proxy_config_text(objs: list[dict], overlay: str) -> tuple[str, bool]:
    """The proxy config the overlay's proxy reads, and whether the secret store provides
    it (then the overlay's proxy-config.yaml, to which the store adds the admin token)."""
    text = (secret_data(objs, "migration-proxy-config") or {}).get("proxy.yaml")
    if text is not None:
        return text, False
    return (ROOT / "k8s/overlays" / overlay / "proxy-config.yaml").read_text(), True


@functools.lru_cache(maxsize=None)
def binary(image: str) -> sources.Binary:
    return sources.binary(IMAGES[image]["crate"])


def built_binary(name: str, crate_dirs: list[str]) -> Path | None:
    """The newest build of a binary, if it is newer than its crates' sources."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    found = [target / p / name for p in ("debug", "release") if (target / p / name).exists()]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    sources_mtime = max(
        p.stat().st_mtime for d in crate_dirs for p in (ROOT / d).rglob("*") if p.suffix in (".rs", ".toml")
    )
    return newest if newest.stat().st_mtime >= sources_mtime else None


def start_proxy(proxy, tmp_path, config_text: str, routing_text: str, drain_secs: int, log_format: str):
    """The real proxy on a config and a VirtualService (written under `tmp_path`),
    listening on free ports of 127.0.0.1: its process, stderr piped (it says where it
    listens there)."""
    (tmp_path / "proxy.yaml").write_text(config_text)
    (tmp_path / "vs.yaml").write_text(routing_text)
    env = {
        **os.environ,
        "PROXY_VIRTUAL_SERVICE": str(tmp_path / "vs.yaml"),
        "PROXY_CONFIG": str(tmp_path / "proxy.yaml"),
        "PROXY_LISTEN": "127.0.0.1:0",
        "PROXY_ADMIN": "127.0.0.1:0",
        "PROXY_DRAIN_SECS": str(drain_secs),
        "PROXY_LOG_FORMAT": log_format,
    }
    return subprocess.Popen([str(proxy)], env=env, stderr=subprocess.PIPE, text=True)
