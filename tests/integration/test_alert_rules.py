"""The shipped Prometheus alert rules parse, their unit tests pass (promtool), every metric
they use is one certgate really exports, and every rule tells the on-call what to do: a
summary, a description and a runbook_url whose anchor is a section of docs/runbook.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ServerProcess, require_tool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"


def _rules() -> list[dict]:
    data = yaml.safe_load((RULES / "certgate-alerts.yml").read_text())
    return [r for g in data["groups"] for r in g["rules"] if "alert" in r]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
    return anchors


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = require_tool("promtool")
    r = subprocess.run([promtool, "check", "rules", "certgate-alerts.yml"], cwd=RULES,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", "certgate-alerts.test.yml"], cwd=RULES,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_rules_use_exported_metrics(server: ServerProcess) -> None:
    _, body = server.get("/metrics")
    exported = {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")}
    families = set(exported)
    for name in exported:  # histograms/counters expose suffixed series
        families |= {name + s for s in ("_bucket", "_sum", "_count", "_total")}
    used = set(re.findall(r"certgate_[a-z_]+", (RULES / "certgate-alerts.yml").read_text()))
    missing = sorted(u for u in used if u not in families)
    assert not missing, f"alert rules use metrics certgate does not export: {missing}"


def test_every_rule_has_summary_description_and_runbook_section() -> None:
    rules = _rules()
    assert len(rules) >= 20
    anchors = _anchors(RUNBOOK.read_text())
    for rule in rules:
        name, notes = rule["alert"], rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert notes.get(key, "").strip(), f"{name}: no {key} annotation"
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/runbook.md", f"{name}: runbook_url {notes['runbook_url']!r}"
        assert anchor == name.lower(), f"{name}: runbook anchor {anchor!r}, want {name.lower()!r}"
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), name


def test_every_rule_has_a_promtool_test() -> None:
    tests = yaml.safe_load((RULES / "certgate-alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])
             if t.get("exp_alerts")}
    untested = sorted(r["alert"] for r in _rules() if r["alert"] not in fired)
    assert not untested, f"rules without a promtool test that makes them fire: {untested}"
