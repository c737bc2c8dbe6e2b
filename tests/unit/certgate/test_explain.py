"""`certgate explain` (a real CLI process on a real PKI and store) and /api/v1/explain (the
admin API in process, with the change feed RADIUS uses)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certgate.app import build_feed, build_runtime
from certgate.features import mount
from certgate.settings import load_settings
from certgate.web import build_app
from pki import profiles
from pki.keys import generate_key, load_private_key
from tests.support import TOKEN, certgate, write_config

PEM = serialization.Encoding.PEM
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Lab:
    def __init__(self, directory: Path) -> None:
        self.config = write_config(directory / "cg")
        certgate("init", config=self.config)
        self.out = directory / "certs"
        self.serial = {}
        for cn, group in (("d1", "staff"), ("held", "staff"), ("g1", "guests")):
            self.serial[cn] = certgate("certs", "issue", "--group", group, "--cn", cn, "--out",
                                       str(self.out), "--san", f"email:{cn}@example.test",
                                       config=self.config).stdout.strip()
        certgate("revoke", "--serial", self.serial["held"], "--reason", "certificateHold",
                 config=self.config)
        pki = self.config.parent / "var" / "pki"
        staff_ca = x509.load_pem_x509_certificate((pki / "groups/staff/ca.crt").read_bytes())
        staff_key = load_private_key(pki / "groups/staff/ca.key", None)
        root = x509.load_pem_x509_certificate((pki / "root.crt").read_bytes())
        root_key = load_private_key(pki / "root.key", None)
        now = dt.datetime.now(dt.UTC)
        # signed with the real staff CA key but never recorded (a stolen CA key)
        leaf = profiles.device_certificate(ec.generate_private_key(ec.SECP256R1()).public_key(),
                                           profiles.name("unrecorded"), [], "staff", "http://x",
                                           staff_ca, staff_key, profiles.new_serial(), now, 30)
        (self.out / "unrecorded.crt").write_bytes(leaf.public_bytes(PEM))
        # a non-group intermediate under our root, and a leaf from it
        other_key = generate_key("ec-p256")
        other = profiles.intermediate_certificate(other_key, "other", "certgate", root,
                                                  root_key, now, 365)
        leaf = profiles.device_certificate(ec.generate_private_key(ec.SECP256R1()).public_key(),
                                           profiles.name("nongroup"), [], "other", "http://x",
                                           other, other_key, profiles.new_serial(), now, 30)
        (self.out / "nongroup.crt").write_bytes(leaf.public_bytes(PEM))
        (self.out / "other-ca.pem").write_bytes(other.public_bytes(PEM))

    def explain(self, *args: str, config: Path | None = None):  # type: ignore[no-untyped-def]
        return certgate("explain", *args, config=config or self.config, check=False)

    def json(self, *args: str, config: Path | None = None) -> tuple[int, dict]:
        r = self.explain(*args, "--json", config=config)
        assert r.stderr == "", r.stderr
        return r.returncode, json.loads(r.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:  # type: ignore[no-untyped-def]
    return Lab(tmp_path_factory.mktemp("explain"))


def _reply(answer: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for attr in answer["reply"]:
        out.setdefault(attr["name"], []).append(attr["value"])
    return out


def test_accept_prints_group_and_reply_attributes(lab: Lab) -> None:
    r = lab.explain(str(lab.out / "d1.crt"))
    assert r.returncode == 0, r.stderr
    assert "verdict:   ACCEPT" in r.stdout and "group:     staff" in r.stdout
    assert 'Tunnel-Private-Group-Id = "10"' in r.stdout and "Tunnel-Type = VLAN (13)" in r.stdout
    code, answer = lab.json(str(lab.out / "d1.crt"))
    assert code == 0
    assert (answer["verdict"], answer["reason"], answer["group"]) == ("accept", "ok", "staff")
    reply = _reply(answer)
    assert reply["User-Name"] == ["d1@example.test"]
    assert reply["Tunnel-Type"] == [13] and reply["Tunnel-Medium-Type"] == [6]
    assert reply["Tunnel-Private-Group-Id"] == ["10"] and reply["Filter-Id"] == ["staff-acl"]
    assert reply["Class"] == ["staff", f"certgate:staff:{lab.serial['d1']}"]
    not_after = dt.datetime.fromisoformat(answer["certificate"]["not_after"])
    evaluated = dt.datetime.fromisoformat(answer["evaluated_at"])
    # staff has no session_timeout: clamped to the certificate's notAfter
    assert reply["Session-Timeout"] == [int((not_after - evaluated).total_seconds())]
    assert answer["inventory"]["status"] == "active" and answer["inventory"]["same_certificate"]
    assert answer["chain"][1].startswith("CN=certgate staff CA")
    assert answer["source"] == "store" and answer["not_checked"]
    # guests: its own session_timeout (28800) is below the time to expiry
    code, answer = lab.json("--serial", lab.serial["g1"])
    assert code == 0 and answer["group"] == "guests"
    assert _reply(answer)["Session-Timeout"] == [28800]
    assert _reply(answer)["Tunnel-Private-Group-Id"] == ["20"]


def test_hold_is_a_revoked_reject_with_the_way_out(lab: Lab) -> None:
    code, answer = lab.json(str(lab.out / "held.crt"))
    assert code == 1
    assert (answer["verdict"], answer["reason"], answer["group"]) == ("reject", "revoked", "staff")
    assert answer["reply"] == []
    assert answer["inventory"]["reason"] == "certificateHold"
    assert answer["inventory"]["revoked_by"] == "cli:revoke"
    assert "--release-hold" in answer["hint"]
    r = lab.explain("--serial", lab.serial["held"])
    assert r.returncode == 1 and "reason:    revoked" in r.stdout


def test_serial_and_file_forms_agree(lab: Lab) -> None:
    _, by_file = lab.json(str(lab.out / "d1.chain.pem"))
    _, by_serial = lab.json("--serial", lab.serial["d1"])
    for answer in (by_file, by_serial):
        answer.pop("evaluated_at")
        for attr in answer["reply"]:
            if attr["name"] == "Session-Timeout":
                attr["value"] = "clock-dependent"
    assert by_file == by_serial


def test_expired_and_not_yet_valid_at_another_time(lab: Lab) -> None:
    code, answer = lab.json("--serial", lab.serial["g1"], "--at", "2099-01-01T00:00:00Z")
    assert code == 1 and answer["reason"] == "expired" and answer["evaluated_at"].startswith("2099")
    code, answer = lab.json("--serial", lab.serial["g1"], "--at", "2001-01-01")
    assert code == 1 and answer["reason"] == "not_yet_valid"


def test_inventory_and_issuer(lab: Lab) -> None:
    code, answer = lab.json(str(lab.out / "unrecorded.crt"))
    assert (code, answer["reason"], answer["group"]) == (1, "not_issued", "staff")
    assert answer["inventory"] is None and "inventory" in answer["hint"]
    # require_inventory = false: the same certificate is accepted
    relaxed = lab.config.parent / "relaxed.toml"  # data_dir is relative to the file
    relaxed.write_text(lab.config.read_text().replace(
        "[radius]\n", "[radius]\nrequire_inventory = false\n", 1))
    code, answer = lab.json(str(lab.out / "unrecorded.crt"), config=relaxed)
    assert (code, answer["reason"]) == (0, "ok")
    # a leaf of a non-group intermediate: unknown issuer unless the chain is given
    code, answer = lab.json(str(lab.out / "nongroup.crt"))
    assert (code, answer["reason"], answer["chain"]) == (1, "unknown_issuer", [])
    code, answer = lab.json(str(lab.out / "nongroup.crt"), "--chain",
                            str(lab.out / "other-ca.pem"))
    assert (code, answer["reason"]) == (1, "unknown_group")
    # the RADIUS server's own certificate: under the root, serverAuth only (OpenSSL's
    # ssl_client purpose check refuses it before the group is looked at)
    code, answer = lab.json(str(lab.config.parent / "var" / "pki" / "server.crt"))
    assert (code, answer["reason"], answer["group"]) == (1, "bad_eku", None)
    assert "X509 verify error 26" in answer["detail"]


def test_usage_errors_exit_2_naming_the_input(lab: Lab, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        ((str(tmp_path / "missing.pem"),), "missing.pem: cannot read"),
        ((str(bad),), "bad.pem: not a PEM certificate"),
        ((str(tmp_path),), "cannot read"),  # a directory
        ((str(lab.out / "d1.crt"), "--chain", str(bad)), "--chain"),
        ((), "give CERT.pem or --serial"),
        ((str(lab.out / "d1.crt"), "--serial", "ab"), "give CERT.pem or --serial"),
        (("--serial", "xyz"), "--serial: not a hexadecimal serial"),
        (("--serial", "abcdef"), "--serial: no certificate with serial abcdef"),
        (("--serial", "ab", "--at", "soon"), "--at"),
    ]
    for args, message in cases:
        r = lab.explain(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_store_that_cannot_be_opened_is_exit_3_no_verdict(lab: Lab, tmp_path: Path) -> None:
    # not 1: a script must not take "no verdict" for a reject
    config = tmp_path / "down.toml"  # the lab's PKI, a PostgreSQL store nobody listens for
    text = lab.config.read_text().replace('data_dir = "var"',
                                          f'data_dir = "{lab.config.parent / "var"}"')
    config.write_text(text + '\n[storage]\nurl = "postgresql://certgate@127.0.0.1:1/certgate"\n'
                             'timeout = 1.0\n')
    r = lab.explain(str(lab.out / "d1.crt"), config=config)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "no verdict" in r.stderr and r.stdout == "" and "Traceback" not in r.stderr


# -- the admin API ------------------------------------------------------------------------


@pytest.fixture
async def api(lab: Lab):  # type: ignore[no-untyped-def]
    runtime = await build_runtime(load_settings(lab.config))
    feed = build_feed(runtime)
    await feed.load()
    app = build_app(runtime, 1 << 20)
    await mount(runtime, app)
    client = TestClient(TestServer(app))
    await client.start_server()
    client.runtime, client.feed = runtime, feed  # for the outage test
    try:
        yield client
    finally:
        await client.close()
        await runtime.store.close()


async def test_api_token_required(api) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        resp = await api.get("/api/v1/explain?serial=ab", headers=headers)
        assert resp.status == 401
        resp = await api.post("/api/v1/explain", data=b"x", headers=headers)
        assert resp.status == 401


async def test_api_serial_and_pem_forms_match_the_cli(api, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    _, cli = lab.json("--serial", lab.serial["held"])
    resp = await api.get(f"/api/v1/explain?serial={lab.serial['held']}", headers=AUTH)
    assert resp.status == 200
    by_serial = await resp.json()
    assert set(by_serial) == set(cli)
    for key in ("verdict", "reason", "detail", "group", "certificate", "chain", "reply",
                "inventory", "hint"):
        assert by_serial[key] == cli[key], key
    assert by_serial["source"] == "node"

    pem = (lab.out / "d1.chain.pem").read_bytes()
    resp = await api.post("/api/v1/explain", data=pem, headers=AUTH)
    assert resp.status == 200
    answer = await resp.json()
    assert (answer["verdict"], answer["reason"], answer["group"]) == ("accept", "ok", "staff")
    assert _reply(answer)["Tunnel-Private-Group-Id"] == ["10"]
    leaf, chain = pem.split(b"-----END CERTIFICATE-----\n", 1)
    resp = await api.post("/api/v1/explain?at=2099-01-01T00:00:00Z", headers=AUTH,
                          json={"certificate": (leaf + b"-----END CERTIFICATE-----\n").decode(),
                                "chain": chain.decode()})
    assert resp.status == 200
    answer = await resp.json()
    assert answer["reason"] == "expired" and answer["evaluated_at"] == "2099-01-01T00:00:00Z"
    resp = await api.post("/api/v1/explain", headers=AUTH,
                          data=(lab.out / "unrecorded.crt").read_bytes())
    assert (await resp.json())["reason"] == "not_issued"


async def test_api_bad_input_names_the_field(api) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("GET", "/api/v1/explain", None, None, 400, "serial"),
        ("GET", "/api/v1/explain?serial=zz", None, None, 400, "serial"),
        ("GET", "/api/v1/explain?serial=abcdef", None, None, 404, "serial"),
        ("GET", "/api/v1/explain?serial=ab&at=later", None, None, 400, "at"),
        ("GET", "/api/v1/explain?serial=ab&group=staff", None, None, 400, "group"),
        ("POST", "/api/v1/explain", b"", None, 400, "body"),
        ("POST", "/api/v1/explain", b"hello", None, 400, "body"),
        ("POST", "/api/v1/explain", b"x" * (64 * 1024 + 1), None, 413, "body"),
        ("POST", "/api/v1/explain", None, {"certificate": 7}, 400, "certificate"),
        ("POST", "/api/v1/explain", None, {"certificate": "junk"}, 400, "certificate"),
        ("POST", "/api/v1/explain", None, {"cert": "x"}, 400, "cert"),
        ("POST", "/api/v1/explain", None, [1], 400, "body"),
    ]
    for method, path, data, body, status, field in cases:
        resp = await api.request(method, path, data=data, json=body, headers=AUTH)
        assert resp.status == status, (path, data, body, await resp.text())
        answer = await resp.json()
        assert answer["field"] == field and answer["error"].startswith(f"{field}: "), answer


async def test_api_answers_from_memory_while_the_store_is_down(api, lab: Lab, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Like RADIUS: a certificate this node has seen is still judged; past the outage grace
    (outage_mode closed) everything is store_unavailable, as the RADIUS server answers."""
    from store import StoreUnavailable

    async def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("get", "ConnectionRefusedError")

    monkeypatch.setattr(api.runtime.store, "get", down)
    pem = (lab.out / "d1.chain.pem").read_bytes()
    resp = await api.post("/api/v1/explain", data=pem, headers=AUTH)
    answer = await resp.json()
    assert resp.status == 200 and answer["verdict"] == "accept", answer
    assert answer["inventory"] == {"error": "store unavailable: ConnectionRefusedError"}
    resp = await api.get(f"/api/v1/explain?serial={lab.serial['d1']}", headers=AUTH)
    assert resp.status == 503  # the serial form needs the store for the certificate itself

    feed = api.feed
    feed.down_since = feed.clock() - feed.outage_grace - 1
    resp = await api.post("/api/v1/explain", data=pem, headers=AUTH)
    answer = await resp.json()
    assert (answer["verdict"], answer["reason"]) == ("reject", "store_unavailable")
    feed.down_since = None
