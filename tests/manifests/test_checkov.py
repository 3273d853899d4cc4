"""checkov's security scan of what is applied (each overlay rendered) and of the
Dockerfiles: no failed check; each skip is an in-place annotation or comment with its
reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from manifests import IMAGES, OVERLAYS, ROOT, rendered_text


def run_checkov(tmp_path: Path, framework: str, targets: list[str]) -> dict:
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "true", "LOG_LEVEL": "ERROR"}
    run = subprocess.run(
        [str(Path(sys.executable).with_name("checkov")), *targets, "--framework", framework,
         "--skip-download", "--output", "json", "--quiet"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    assert run.returncode in (0, 1), f"checkov failed to run:\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    return report


def describe(results: list[dict]) -> str:
    return "\n".join(
        f"{r['check_id']} {r['check_name']}: {r['resource']} ({r['file_path']}:{r['file_line_range']})" for r in results
    )


def test_checkov_kubernetes(tmp_path):
    # checkov scans what is applied: each overlay rendered. (The sources under k8s/ are
    # fragments, patches without probes or namespaces, which it would misjudge.)
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(rendered_text(overlay))
    report = run_checkov(tmp_path, "kubernetes", ["--directory", str(tmp_path)])
    results = report["results"]
    assert report["summary"]["parsing_errors"] == 0
    assert not results.get("failed_checks"), describe(results["failed_checks"])
    assert report["summary"]["passed"] > 100, "checkov checked next to nothing"
    for skipped in results.get("skipped_checks", []):
        assert len(skipped.get("suppress_comment") or "") > 40, f"unjustified skip: {describe([skipped])}"


def test_checkov_dockerfiles(tmp_path):
    targets = [a for spec in IMAGES.values() for a in ("--file", spec["dockerfile"])]
    report = run_checkov(tmp_path, "dockerfile", targets)
    results = report["results"]
    assert not results.get("failed_checks"), describe(results["failed_checks"])
    assert report["summary"]["passed"] > 10, "checkov checked next to nothing"
    for skipped in results.get("skipped_checks", []):
        assert len(skipped.get("suppress_comment") or "") > 40, f"unjustified skip: {describe([skipped])}"
