"""Real supplicant: /usr/bin/eapol_test (wpa_supplicant 2.10) against RadiusServer.

The server runs in-process on its own event loop in a thread, on 127.0.0.1 with an
ephemeral port and the fixture PKI. Skipped when eapol_test is missing, unless CI is set
(then it fails: the CI image must have the `eapoltest` package).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from radius.options import EapOptions, RadiusClient
from radius.server import RadiusServer

EAPOL_TEST = shutil.which("eapol_test") or "/usr/bin/eapol_test"
SECRET = "testing123"


def _require_eapol_test() -> None:
    if os.path.exists(EAPOL_TEST):
        return
    if os.environ.get("CI"):
        pytest.fail("eapol_test not installed but CI is set (apt-get install eapoltest)")
    pytest.skip("eapol_test not installed (Debian package eapoltest)")


@pytest.fixture(scope="module")
def running_server(pki, context_factory) -> Iterator[tuple[int, Path]]:  # type: ignore[no-untyped-def]
    _require_eapol_test()
    from radius.authorize import authorize

    options = EapOptions()
    server = RadiusServer(
        [RadiusClient("eapol", ipaddress.ip_network("127.0.0.1/32"), SECRET.encode())],
        options,
        context_factory(options),
        lambda leaf, chain, resumed, now: authorize(leaf, chain, resumed, pki.groups, pki.revoked, now),
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, name="radius-test-loop", daemon=True)
    thread.start()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="certgate-eapol-") as tmp:
        directory = Path(tmp)
        pki.write_bundle(directory)
        try:
            yield server.address[1], directory
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


def _eapol(port: int, directory: Path, client: str, tls: str, fragment_size: int = 1398):  # type: ignore[no-untyped-def]
    if tls == "1.3":
        versions = "tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0"
    else:
        versions = "tls_disable_tlsv1_2=0 tls_disable_tlsv1_3=1"
    conf = directory / f"{client}-{tls}-{fragment_size}.conf"
    conf.write_text(
        f"""network={{
    key_mgmt=IEEE8021X
    eap=TLS
    identity="anonymous@example.test"
    ca_cert="{directory / "root.pem"}"
    client_cert="{directory / f"{client}.pem"}"
    private_key="{directory / f"{client}.key"}"
    domain_suffix_match="radius.test"
    phase1="tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 {versions}"
    fragment_size={fragment_size}
    eapol_flags=0
}}
"""
    )
    return subprocess.run(
        [EAPOL_TEST, "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-s", SECRET, "-t", "10"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _count(result: str, reason: str, tls: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "certgate_eap_authentications":
            continue
        for s in metric.samples:
            labels = s.labels
            if (
                s.name.endswith("_total")
                and labels.get("result") == result
                and labels.get("reason") == reason
                and labels.get("tls_version") == tls
            ):
                total += s.value
    return total


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize(
    ("client", "fragment_size"), [("staff-ok", 1398), ("staff-ok", 300), ("guests-ok", 1398)]
)
def test_accept(running_server, tls, client, fragment_size) -> None:  # type: ignore[no-untyped-def]
    port, directory = running_server
    before = _count("accept", "ok", tls)
    proc = _eapol(port, directory, client, tls, fragment_size)
    mppe = [line for line in proc.stdout.splitlines() if line.startswith("MPPE keys OK")]
    print(client, tls, fragment_size, mppe)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert mppe == ["MPPE keys OK: 1  mismatch: 0"]
    assert _count("accept", "ok", tls) == before + 1  # negotiated the requested version


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize(
    ("client", "reason"),
    [
        ("staff-revoked", "revoked"),
        ("staff-expired", "expired"),
        ("rogue-ok", "unknown_issuer"),
        ("other-ok", "unknown_group"),
    ],
)
def test_reject(running_server, tls, client, reason) -> None:  # type: ignore[no-untyped-def]
    port, directory = running_server
    before = _count("reject", reason, tls)
    proc = _eapol(port, directory, client, tls)
    assert proc.returncode != 0
    assert "CTRL-EVENT-EAP-FAILURE" in proc.stdout
    assert "Access-Reject" in proc.stdout
    assert _count("reject", reason, tls) == before + 1
