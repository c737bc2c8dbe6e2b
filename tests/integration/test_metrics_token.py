"""`[http] metrics_token`: /metrics behind a bearer token, scraped by a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ServerProcess, certgate, free_port, require_tool, write_config

pytestmark = pytest.mark.integration

METRICS_TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def guarded(tmp_path: Path):
    config = write_config(tmp_path / "cg")
    text = config.read_text()
    config.write_text(text.replace("[http]\n", f'[http]\nmetrics_token = "{METRICS_TOKEN}"\n', 1))
    certgate("init", config=config)
    proc = ServerProcess(config, tmp_path / "serve.log").start()
    yield proc
    proc.stop()


def test_metrics_need_the_token(guarded: ServerProcess) -> None:
    assert guarded.get("/metrics")[0] == 401
    for header in (f"Bearer {METRICS_TOKEN}x", f"Bearer  {METRICS_TOKEN}", f"Basic {METRICS_TOKEN}"):
        assert guarded.get("/metrics", {"Authorization": header})[0] == 401, header
    status, body = guarded.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200 and b"certgate_store_up 1.0" in body
    assert guarded.get("/healthz")[0] == 200  # probes stay open


def test_a_real_prometheus_scrapes_with_the_token(guarded: ServerProcess, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    token_file = tmp_path / "metrics.token"
    token_file.write_text(METRICS_TOKEN)
    token_file.chmod(0o600)
    target = guarded.http.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(f"""\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: certgate
    authorization:
      credentials_file: {token_file}
    static_configs: [{{targets: ["{target}"]}}]
  - job_name: certgate-no-token
    static_configs: [{{targets: ["{target}"]}}]
""")
    port = free_port()
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        up: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(up) < 2:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query=up",
                                            timeout=5) as r:
                    result = json.load(r)["data"]["result"]
            except OSError:
                continue
            up = {s["metric"]["job"]: float(s["value"][1]) for s in result}
        assert up == {"certgate": 1.0, "certgate-no-token": 0.0}, up
    finally:
        proc.terminate()
        proc.wait(timeout=20)
