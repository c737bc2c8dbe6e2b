"""The shipped Prometheus alert rules parse, their unit tests pass (promtool), every metric
they use is one certgate really exports, and every rule tells the on-call what to do: a
summary, a description and a runbook_url whose anchor is a section of docs/runbook.md."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import ServerProcess, free_port, require_tool

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


def _until(what: str, check, timeout: float):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_rules_on_a_real_prometheus(server: ServerProcess, tmp_path: Path) -> None:
    """Prometheus loads the rules and scrapes a live certgate under the documented job name:
    every rule evaluates without error, none is pending or firing on a healthy node, and
    stopping certgate makes CertgateDown pending for that instance."""
    binary = require_tool("prometheus")
    target = server.http.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(RULES / 'certgate-alerts.yml'))}]\n"
        "scrape_configs:\n  - job_name: certgate\n"
        f"    static_configs: [{{targets: [{json.dumps(target)}]}}]\n")
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

    def api(path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)["data"]
        except OSError:
            return {}

    def alerts() -> list[dict]:
        data = api("alerts")
        assert "alerts" in data, "Prometheus did not answer /api/v1/alerts"
        return data["alerts"]

    try:
        _until("a successful scrape of certgate", lambda: any(
            s["value"][1] == "1" for s in api("query", query='up{job="certgate"}')
            .get("result", [])), 60)
        scraped = time.monotonic()

        def rules_evaluated() -> list[dict] | None:
            rules = [r for g in api("rules").get("groups", []) for r in g["rules"]]
            done = [r for r in rules if r.get("lastEvaluation", "").startswith("20")]
            return rules if rules and len(done) == len(rules) and time.monotonic() > scraped + 3 \
                else None

        rules = _until("every rule evaluated after the first scrape", rules_evaluated, 30)
        assert len(rules) == len(_rules())
        broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not broken, broken
        active = [(a["labels"]["alertname"], a["state"]) for a in alerts()]
        assert not active, f"alerts active on a healthy certgate: {active}"

        server.stop()
        down = _until("CertgateDown pending", lambda: [
            a for a in alerts() if a["labels"]["alertname"] == "CertgateDown"], 30)
        assert down[0]["labels"]["instance"] == target
        assert down[0]["annotations"]["runbook_url"] == "docs/runbook.md#certgatedown"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
