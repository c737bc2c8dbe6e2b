"""Garbage at every port of the running process: dropped and counted, nothing crashes, and
real clients are served right after."""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import tomllib
from pathlib import Path

import pytest

from tests.support import SECRET, ServerProcess, certgate, run_eapol_test

pytestmark = pytest.mark.integration


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return os.urandom(rng.randrange(0, 4200))
    code = rng.choice([1, 4, 12, 40, 99])
    length = rng.choice([20, 38, 4096, 5000, rng.randrange(0, 65535)])
    attrs = bytes(rng.choice([b"\x50\x12" + os.urandom(16), b"\x4f\x00", b"\x01\xff", b"\x18\x02",
                              os.urandom(rng.randrange(0, 300))]))
    return struct.pack("!BBH", code, rng.randrange(256), length) + os.urandom(16) + attrs


def test_radius_and_http_survive_garbage(server: ServerProcess, initialized: Path,
                                         tmp_path: Path) -> None:
    rng = random.Random(1234)
    cfg = tomllib.loads(initialized.read_text())
    acct_host, acct_port = cfg["radius"]["acct_listen"].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3000):
            sock.sendto(_garbage(rng), server.radius)
            sock.sendto(_garbage(rng), (acct_host, int(acct_port)))
    for body in (b"", os.urandom(5000), b"0\x82\xff\xff" + os.urandom(100)):
        for path in ("/scep/staff?operation=PKIOperation", "/ocsp/staff", "/ocsp",
                     "/api/v1/webhooks/device-removed"):
            status, _ = server.post(path, body, {"Content-Type": "application/octet-stream"})
            assert status < 500, (path, status)
    for path in ("/scep/staff?operation=PKIOperation&message=%%%", "/scep/staff?operation=Nope",
                 "/ocsp/staff/AAAA", "/crl/..%2f..%2fetc%2fpasswd", "/api/v1/certificates/zz"):
        assert server.get(path)[0] < 500, path

    out = tmp_path / "c"
    certgate("certs", "issue", "--group", "staff", "--cn", "after", "--out", str(out),
             config=initialized)
    code, log = run_eapol_test(server.radius, initialized.parent / "var/pki/root.crt",
                               out / "after.chain.pem", out / "after.key", tmp_path,
                               secret=SECRET)
    assert code == 0 and "MPPE keys OK: 1  mismatch: 0" in log, log[-2000:]
    _, metrics = server.get("/metrics")
    text = metrics.decode()
    assert re.search(r'certgate_radius_dropped_total\{client="loopback",reason="malformed"\} [1-9]', text)
    assert re.search(r'certgate_radius_accounting_dropped_total\{client="loopback",reason="[a-z_]+"\} '
                     r'[1-9]', text)
    assert server.proc is not None and server.proc.poll() is None
    assert "Traceback" not in server.log()
