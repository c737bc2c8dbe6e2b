"""The shipped Prometheus alert rules parse, their unit tests pass (promtool), and every metric
they use is one certgate really exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ServerProcess, require_tool

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus"


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
