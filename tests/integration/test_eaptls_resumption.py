"""TLS session resumption (off by default) with eapol_test re-authenticating (-r): resumed
handshakes are accepted with fresh MPPE keys and counted; with resumption off none resume."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import SECRET, ServerProcess, certgate, require_tool, write_config

pytestmark = pytest.mark.integration


def _reauth(server: ServerProcess, config: Path, tmp_path: Path, tls: str) -> str:
    eapol_test = require_tool("eapol_test")
    out = tmp_path / "c"
    if not (out / "dev.key").exists():
        certgate("certs", "issue", "--group", "staff", "--cn", "dev", "--out", str(out),
                 config=config)
    root = config.parent / "var" / "pki" / "root.crt"
    disable = "tls_disable_tlsv1_2=0 tls_disable_tlsv1_3=1" if tls == "1.2" else \
        "tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0"
    conf = tmp_path / f"r{tls}.conf"
    conf.write_text("network={\n\tkey_mgmt=WPA-EAP\n\teap=TLS\n\tidentity=\"dev\"\n"
                    f'\tca_cert="{root}"\n\tclient_cert="{out / "dev.chain.pem"}"\n'
                    f'\tprivate_key="{out / "dev.key"}"\n'
                    f'\tphase1="tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 {disable}"\n}}\n')
    host, port = server.radius
    r = subprocess.run([eapol_test, "-c", str(conf), "-a", host, "-p", str(port), "-s", SECRET,
                        "-r", "2", "-t", "10"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "MPPE keys OK: 3  mismatch: 0" in r.stdout, r.stdout[-3000:]
    return r.stdout


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_resumption_when_enabled(tmp_path: Path, tls: str) -> None:
    config = write_config(tmp_path / "cg", radius_extra="resumption = true")
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    try:
        _reauth(server, config, tmp_path, tls)
        _, body = server.get("/metrics")
        m = re.search(r'certgate_tls_resumptions_total\{result="resumed"\} (\d+)', body.decode())
        assert m and int(m.group(1)) >= 1, body.decode()[:3000]
    finally:
        server.stop()


def test_no_resumption_by_default(server: ServerProcess, initialized: Path, tmp_path: Path) -> None:
    _reauth(server, initialized, tmp_path, "1.2")
    _, body = server.get("/metrics")
    assert not re.search(r'certgate_tls_resumptions_total\{result="resumed"\} [1-9]', body.decode())
