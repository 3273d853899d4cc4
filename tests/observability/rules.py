"""The migration's Prometheus rules, checked with promtool (Debian's `prometheus`):
the PrometheusRule's groups extracted into a rule file, `promtool check rules` on it,
and `promtool test rules` on rules.test.yaml with each expected alert's annotations
filled in from its rule (the templates rendered with the expected labels), so that a
runbook's text lives only in the PrometheusRule. Also checks that every alert has a
test that expects it to fire and one that expects it silent, a severity and a runbook.

    python3 tests/observability/rules.py
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULE = HERE.parent.parent / "k8s" / "base" / "monitoring" / "prometheusrule.yaml"
TESTS = HERE / "rules.test.yaml"
SEVERITIES = {"page", "ticket"}


def render(template: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), template)


def main() -> int:
    rule = yaml.safe_load(RULE.read_text())
    groups = rule["spec"]["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    problems = []
    for name, r in alerts.items():
        if r.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        for key in ("summary", "runbook"):
            if not r.get("annotations", {}).get(key):
                problems.append(f"{name}: no {key} annotation")
    tests = yaml.safe_load(TESTS.read_text())
    fires, silent = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in alerts:
                problems.append(f"a test names {name}, which no rule defines")
                continue
            (fires if case.get("exp_alerts") else silent).add(name)
            for alert in case.get("exp_alerts") or []:
                labels = alert.get("exp_labels", {})
                alert["exp_annotations"] = {
                    k: render(v, labels) for k, v in alerts[name].get("annotations", {}).items()
                }
    for name in alerts:
        if name not in fires:
            problems.append(f"{name}: no test expects it to fire")
        if name not in silent:
            problems.append(f"{name}: no test expects it silent")
    if problems:
        for p in problems:
            print(f"rules: {p}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as work:
        rules_file = Path(work) / "rules.yaml"
        rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        tests_file = Path(work) / "rules.test.yaml"
        tests_file.write_text(yaml.safe_dump(tests, sort_keys=False))
        for args in (["check", "rules", str(rules_file)], ["test", "rules", str(tests_file)]):
            done = subprocess.run(["promtool", *args], cwd=work)
            if done.returncode != 0:
                return done.returncode
    print(f"rules: {len(alerts)} alerts, each tested firing and silent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
