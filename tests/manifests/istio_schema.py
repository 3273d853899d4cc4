"""Validation of custom resources against their CustomResourceDefinitions, the way the
API server validates them: Istio's (istio-crds.yaml beside this file, a copy of
../shared/schemas/istio-crds.yaml) and prometheus-operator's PrometheusRule,
ServiceMonitor and PodMonitor (prometheus-operator-crds.yaml, a copy of
../shared/schemas/prometheus-operator-crds.yaml):

- the `openAPIV3Schema` of the object's apiVersion, with jsonschema;
- unknown fields refused (kubectl's default `--validate=strict`): every object schema
  that lists its properties and does not preserve unknown fields gets
  `additionalProperties: false`;
- `x-kubernetes-int-or-string`, and `nullable`;
- the CEL rules (`x-kubernetes-validations`): each rule the CRDs use is implemented
  below, in Python; a rule that is not (a newer CRD file) fails the validation by name,
  so that no rule is silently skipped.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parent / "istio-crds.yaml"
PROMETHEUS_CRDS = Path(__file__).resolve().parent / "prometheus-operator-crds.yaml"
CRD_FILES = (CRDS, PROMETHEUS_CRDS)

_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration (`1.5s`, `300ms`, `1h2m`); ValueError otherwise."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(n) * _UNIT[u] for n, u in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text))


def _ge_1ms(v) -> bool:
    try:
        return go_duration(v) >= 0.001
    except ValueError:
        return False


def _one_of(*names):
    return lambda v: sum(1 for n in names if n in v) <= 1


def _port_keys(v) -> bool:
    try:
        return all(0 < int(k) <= 65535 for k in v)
    except (TypeError, ValueError):
        return False


# The CEL rules of the CRDs, as Python predicates over `self`.
CEL_RULES = {
    "duration(self) >= duration('1ms')": _ge_1ms,
    "self.size() == 0": lambda v: len(v) == 0,
    '!self.contains("*")': lambda v: "*" not in v,
    "self.all(key, key.size() != 0)": lambda v: all(len(k) != 0 for k in v),
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    'url(self).getScheme() in ["http", "https"]': lambda v: urlparse(v).scheme in ("http", "https")
    and bool(urlparse(v).netloc),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": _port_keys,
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1": _one_of(
        "jwksUri", "jwks_uri", "jwks"
    ),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": _one_of(
        "selector", "targetRef", "targetRefs"
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": lambda v: "portLevelMtls" not in v
    or len((v.get("selector") or {}).get("matchLabels") or {}) > 0,
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && "
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": lambda v: not (
        "serviceAccounts" in v or "notServiceAccounts" in v
    )
    or not any(k in v for k in ("principals", "notPrincipals", "namespaces", "notNamespaces")),
}


def _normalise_rule(rule: str) -> str:
    return " ".join(rule.split())


_RULES = {_normalise_rule(k): f for k, f in CEL_RULES.items()}


def _cel(validator, rules, instance, schema):
    for rule in rules:
        text = _normalise_rule(rule["rule"])
        check = _RULES.get(text)
        if check is None:
            yield jsonschema.ValidationError(f"CEL rule not implemented by this test: {text}")
        elif not check(instance):
            yield jsonschema.ValidationError(f"{rule.get('message', text)} (CEL: {text})")


def _int_or_string(validator, value, instance, schema):
    if value and not (isinstance(instance, (int, str)) and not isinstance(instance, bool)):
        yield jsonschema.ValidationError(f"{instance!r} is neither an integer nor a string")


def _type(validator, types, instance, schema):
    if instance is None and schema.get("nullable"):
        return
    yield from jsonschema.Draft7Validator.VALIDATORS["type"](validator, types, instance, schema)


Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    {"x-kubernetes-validations": _cel, "x-kubernetes-int-or-string": _int_or_string, "type": _type},
)


def _strict(schema):
    """Copy of `schema` where objects refuse the properties they do not list."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def crds() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> CRD version entry (`served`, `storage`, `schema`)."""
    out = {}
    docs = [d for path in CRD_FILES for d in yaml.safe_load_all(path.read_text())]
    for doc in docs:
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version
    return out


@lru_cache(maxsize=None)
def _validator(api_version: str, kind: str):
    schema = _strict(copy.deepcopy(crds()[(api_version, kind)]["schema"]["openAPIV3Schema"]))
    # The API server validates metadata itself; the CRD schema leaves it open.
    schema.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    )
    return Validator(schema)


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_istio(obj: dict) -> bool:
    return obj.get("apiVersion", "").split("/")[0].endswith(".istio.io")


def is_monitoring(obj: dict) -> bool:
    return obj.get("apiVersion", "").split("/")[0] == "monitoring.coreos.com"


def is_custom(obj: dict) -> bool:
    """Whether one of these CRDs (not the Kubernetes schemas) defines `obj`'s kind."""
    return is_istio(obj) or is_monitoring(obj)


def errors(obj: dict) -> list[str]:
    """Why `obj` would be refused by an API server with these CRDs (empty: accepted)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    version = crds().get(key)
    if version is None:
        return [f"no CRD for {key[1]} in {key[0]} (the CRD files have {sorted(crds())})"]
    out = []
    if not version.get("served"):
        out.append(f"{key[0]} is not served")
    meta = obj.get("metadata") or {}
    for field in ("name", "namespace"):
        value = meta.get(field, "")
        if not (isinstance(value, str) and len(value) <= 253 and _NAME.match(value)):
            out.append(f"metadata.{field} {value!r} is not a DNS subdomain")
    for error in sorted(_validator(*key).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        out.append(f"{path}: {error.message}")
    return out
