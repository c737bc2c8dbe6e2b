from __future__ import annotations

import asyncio
import base64
import datetime as dt
import shutil
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from revocation.ocsp import (
    CONTENT_TYPE,
    GOOD,
    UNKNOWN,
    MalformedRequest,
    OcspSigner,
    Outcome,
    ResponseCache,
    Revoked,
    SignerTable,
    answer,
    decode_get,
    requested_serial,
    respond,
    unsuccessful,
)

H = dt.timedelta(hours=1)
S = ocsp.OCSPResponseStatus


@pytest.fixture(scope="module")
def signers(pki) -> SignerTable:
    return SignerTable({"staff": (pki.staff, pki.staff_key), "guests": (pki.guests, pki.guests_key)})


@pytest.fixture
def table(pki, now):
    """(group, serial) -> status, as the store would answer. Calls are recorded."""
    statuses = {
        ("staff", pki.leaf.serial_number): Revoked(now - 2 * H, "key_compromise"),
        ("staff", pki.leaf2.serial_number): GOOD,
        ("guests", pki.guest_leaf.serial_number): Revoked(now - 3 * H, None),
    }
    calls: list[tuple[str, int]] = []

    def lookup(group: str, serial: int):
        calls.append((group, serial))
        return statuses.get((group, serial), UNKNOWN)

    lookup.calls = calls  # type: ignore[attr-defined]
    return lookup


def _request(cert, issuer, algorithm=None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


class TestAnswer:
    @pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA512()])
    def test_good(self, pki, now, signers, table, algorithm):
        a = answer(_request(pki.leaf2, pki.staff, algorithm), table, signers, now)
        assert (a.outcome, a.group, a.serial) == (Outcome.GOOD, "staff", pki.leaf2.serial_number)
        assert table.calls == [("staff", pki.leaf2.serial_number)]
        r = ocsp.load_der_ocsp_response(a.der)
        assert r.response_status is S.SUCCESSFUL
        assert r.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert r.serial_number == pki.leaf2.serial_number
        assert r.hash_algorithm.name == algorithm.name
        assert r.this_update_utc == now and r.next_update_utc == now + H == a.next_update
        assert (
            r.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(pki.staff.public_key()).digest
        )
        assert r.certificates == []
        pki.staff.public_key().verify(r.signature, r.tbs_response_bytes, ec.ECDSA(r.signature_hash_algorithm))

    def test_revoked_with_reason(self, pki, now, signers, table):
        r = ocsp.load_der_ocsp_response(respond(_request(pki.leaf, pki.staff), table, signers, now))
        assert r.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert r.revocation_time_utc == now - 2 * H
        assert r.revocation_reason is x509.ReasonFlags.key_compromise

    def test_revoked_unspecified_omits_reason_and_rsa_group(self, pki, now, signers, table):
        a = answer(_request(pki.guest_leaf, pki.guests), table, signers, now)
        assert (a.outcome, a.group) == (Outcome.REVOKED, "guests")
        r = ocsp.load_der_ocsp_response(a.der)
        assert r.revocation_reason is None and r.revocation_time_utc == now - 3 * H
        assert r.signature_hash_algorithm.name == "sha256"

    def test_unknown_serial(self, pki, now, signers, table):
        # a staff-looking CertID for a serial the store has never seen
        req = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(*_hashes(pki.leaf, pki.staff, hashes.SHA256()), 0xDEAD, hashes.SHA256())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        a = answer(req, table, signers, now)
        assert a.outcome is Outcome.UNKNOWN
        r = ocsp.load_der_ocsp_response(a.der)
        assert r.certificate_status is ocsp.OCSPCertStatus.UNKNOWN and r.serial_number == 0xDEAD

    def test_nonce_echoed(self, pki, now, signers, table):
        r = ocsp.load_der_ocsp_response(
            respond(_request(pki.leaf2, pki.staff, nonce=b"n" * 16), table, signers, now)
        )
        assert r.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16

    def test_no_nonce_no_extension(self, pki, now, signers, table):
        r = ocsp.load_der_ocsp_response(respond(_request(pki.leaf2, pki.staff), table, signers, now))
        assert len(r.extensions) == 0

    def test_validity(self, pki, now, signers, table):
        a = answer(_request(pki.leaf2, pki.staff), table, signers, now, validity=5 * H)
        assert ocsp.load_der_ocsp_response(a.der).next_update_utc == now + 5 * H


def _hashes(leaf, issuer, algorithm):
    """issuerNameHash/issuerKeyHash as cryptography computes them (independent of ours;
    the name hash is over the *leaf's* issuer field)."""
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    return req.issuer_name_hash, req.issuer_key_hash


class TestErrors:
    @pytest.mark.parametrize("der", [b"", b"\x30\x00", b"garbage", b"\x30\x82\xff\xff" + b"\x00" * 20])
    def test_malformed(self, now, signers, table, der):
        a = answer(der, table, signers, now)
        assert a.outcome is Outcome.MALFORMED
        assert ocsp.load_der_ocsp_response(a.der).response_status is S.MALFORMED_REQUEST
        assert table.calls == []

    def test_too_large(self, now, signers, table):
        assert answer(b"\x30" * 20000, table, signers, now).outcome is Outcome.MALFORMED

    def test_several_certids_unsupported(self, now, signers, table, openssl, pki, tmp_path):
        openssl(
            "ocsp",
            "-issuer",
            pki.path("staff.pem"),
            "-cert",
            pki.path("leaf.pem"),
            "-cert",
            pki.path("leaf2.pem"),
            "-reqout",
            tmp_path / "multi.der",
        )
        a = answer((tmp_path / "multi.der").read_bytes(), table, signers, now)
        assert a.outcome is Outcome.MALFORMED

    @pytest.mark.parametrize("nonce", [b"", b"x" * 33])
    def test_bad_nonce_length(self, pki, now, signers, table, nonce):
        a = answer(_request(pki.leaf2, pki.staff, nonce=nonce), table, signers, now)
        assert a.outcome is Outcome.MALFORMED

    def test_unknown_issuer_is_unauthorized(self, pki, now, signers, table):
        a = answer(_request(pki.staff, pki.root), table, signers, now)
        assert (a.outcome, a.group) == (Outcome.UNAUTHORIZED, None)
        assert ocsp.load_der_ocsp_response(a.der).response_status is S.UNAUTHORIZED
        assert table.calls == []

    def test_copied_name_other_key_is_unauthorized(self, pki, now, signers, table):
        name_hash, _ = _hashes(pki.leaf, pki.staff, hashes.SHA1())
        req = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, b"\x01" * 20, pki.leaf.serial_number, hashes.SHA1())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        assert answer(req, table, signers, now).outcome is Outcome.UNAUTHORIZED

    def test_unsupported_certid_hash_is_unauthorized(self, pki, now, signers, table):
        from asn1crypto import ocsp as asn1_ocsp

        req = asn1_ocsp.OCSPRequest.load(_request(pki.leaf2, pki.staff))
        cert_id = req["tbs_request"]["request_list"][0]["req_cert"]
        cert_id["hash_algorithm"] = {"algorithm": "md5"}
        cert_id["issuer_name_hash"] = b"\x00" * 16
        cert_id["issuer_key_hash"] = b"\x00" * 16
        a = answer(req.dump(force=True), table, signers, now)
        assert a.outcome is Outcome.UNAUTHORIZED and table.calls == []

    def test_negative_serial_is_malformed(self, pki, now, signers, table):
        """A negative CertID serial (found by tests/fuzz/fuzz_ocsp_request.py) made the
        response builder raise ValueError: it is no serial we issue and cannot be
        echoed, so it is a malformedRequest, and requested_serial agrees."""
        from asn1crypto import ocsp as asn1_ocsp

        req = asn1_ocsp.OCSPRequest.load(_request(pki.leaf2, pki.staff))
        req["tbs_request"]["request_list"][0]["req_cert"]["serial_number"] = -111
        der = req.dump(force=True)
        a = answer(der, table, signers, now)
        assert a.outcome is Outcome.MALFORMED and table.calls == []
        assert requested_serial(der) is None

    def test_lookup_returning_junk_is_our_bug(self, pki, now, signers):
        with pytest.raises(TypeError, match="lookup returned"):
            answer(_request(pki.leaf2, pki.staff), lambda g, s: "good", signers, now)

    def test_lookup_errors_propagate(self, pki, now, signers):
        def broken(group, serial):
            raise RuntimeError("db down")

        with pytest.raises(RuntimeError):
            answer(_request(pki.leaf2, pki.staff), broken, signers, now)
        assert ocsp.load_der_ocsp_response(unsuccessful(S.TRY_LATER)).response_status is (S.TRY_LATER)

    def test_argument_checks(self, pki, now, signers, table):
        req = _request(pki.leaf2, pki.staff)
        with pytest.raises(ValueError, match="timezone-aware"):
            answer(req, table, signers, now.replace(tzinfo=None))
        with pytest.raises(TypeError):
            answer(req, table, {"staff": (pki.staff, pki.staff_key)}, now)
        with pytest.raises(TypeError):
            answer("req", table, signers, now)
        with pytest.raises(ValueError, match="validity"):
            answer(req, table, signers, now, validity=dt.timedelta(0))


class TestRequestedSerial:
    def test_serial_or_none(self, pki, tmp_path, openssl):
        assert requested_serial(_request(pki.leaf, pki.staff)) == pki.leaf.serial_number
        assert requested_serial(b"garbage") is None
        assert requested_serial(b"\x30" * 20000) is None
        openssl(
            "ocsp",
            "-issuer",
            pki.path("staff.pem"),
            "-cert",
            pki.path("leaf.pem"),
            "-cert",
            pki.path("leaf2.pem"),
            "-reqout",
            tmp_path / "multi.der",
        )
        assert requested_serial((tmp_path / "multi.der").read_bytes()) is None


class TestSignerTable:
    def test_hashes_match_cryptography(self, pki):
        signer = OcspSigner("staff", pki.staff, pki.staff_key)
        ours = {alg: (n, k) for alg, n, k in signer.cert_id_hashes()}
        for algorithm in (hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384()):
            assert ours[algorithm.name] == _hashes(pki.leaf, pki.staff, algorithm)
        rsa_ours = {a: (n, k) for a, n, k in OcspSigner("g", pki.guests, pki.guests_key).cert_id_hashes()}
        assert rsa_ours["sha1"] == _hashes(pki.guest_leaf, pki.guests, hashes.SHA1())

    def test_rejects(self, pki):
        with pytest.raises(ValueError, match="does not match"):
            SignerTable({"staff": (pki.staff, pki.guests_key)})
        with pytest.raises(ValueError, match="share"):
            SignerTable(
                [
                    OcspSigner("a", pki.staff, pki.staff_key),
                    OcspSigner("b", pki.staff, pki.staff_key),
                ]
            )
        with pytest.raises(ValueError, match="duplicate"):
            SignerTable(
                [
                    OcspSigner("a", pki.staff, pki.staff_key),
                    OcspSigner("a", pki.guests, pki.guests_key),
                ]
            )
        with pytest.raises(TypeError):
            SignerTable([("a", pki.staff, pki.staff_key)])

    def test_lookup_by_group(self, signers, pki):
        assert len(signers) == 2
        assert signers.for_group("guests").cert == pki.guests
        assert signers.for_group("nope") is None


class TestRevokedStatus:
    def test_validation(self, now):
        with pytest.raises(ValueError):
            Revoked(now, "removeFromCRL")
        with pytest.raises(ValueError):
            Revoked(now.replace(tzinfo=None))
        with pytest.raises(TypeError):
            Revoked("yesterday")


class TestDecodeGet:
    def test_round_trip_variants(self, pki):
        der = _request(pki.leaf, pki.staff, hashes.SHA256(), nonce=b"\xfb\xff" * 8)
        b64 = base64.b64encode(der).decode()
        assert "+" in b64 or "/" in b64
        for tail in (
            b64,
            "/" + b64,
            quote(b64, safe=""),
            quote(b64, safe="/"),
            b64.rstrip("="),
            base64.urlsafe_b64encode(der).decode().rstrip("="),
        ):
            assert decode_get(tail) == der, tail

    @pytest.mark.parametrize("tail", ["", "/", "!!!", "a", "%ff%fe", "abc def"])
    def test_malformed(self, tail):
        with pytest.raises(MalformedRequest):
            decode_get(tail)

    def test_malformed_is_value_error(self):
        assert issubclass(MalformedRequest, ValueError)


class TestOpensslRelyingParty:
    """Requests made by `openssl ocsp -reqout`, responses checked by `openssl ocsp -respin`.

    `-reqin` makes openssl compare the response nonce with the request's; `-issuer -cert`
    at verification time would build a fresh request (new nonce), so the status summary
    line ("leaf.pem: good") is checked separately with nonce-less requests.
    """

    def _check(self, openssl, pki, tmp_path, signers, table, now, leaf, issuer, *extra):
        req, resp = tmp_path / "req.der", tmp_path / "resp.der"
        openssl("ocsp", "-issuer", pki.path(issuer), *extra, "-cert", pki.path(leaf), "-reqout", req)
        resp.write_bytes(respond(req.read_bytes(), table, signers, now))
        p = openssl(
            "ocsp",
            "-respin",
            resp,
            "-reqin",
            req,
            "-CAfile",
            pki.path("root.pem"),
            "-verify_other",
            pki.path(issuer),
            "-resp_text",
            check=False,
        )
        return p.returncode, p.stdout + p.stderr

    def _summary(self, openssl, pki, tmp_path, signers, table, now, leaf, issuer, *extra):
        req, resp = tmp_path / "req.der", tmp_path / "resp.der"
        args = ("-issuer", pki.path(issuer), *extra, "-cert", pki.path(leaf), "-no_nonce")
        openssl("ocsp", *args, "-reqout", req)
        resp.write_bytes(respond(req.read_bytes(), table, signers, now))
        p = openssl(
            "ocsp",
            "-respin",
            resp,
            *args,
            "-CAfile",
            pki.path("root.pem"),
            "-verify_other",
            pki.path(issuer),
            check=False,
        )
        return p.returncode, p.stdout + p.stderr

    @pytest.mark.parametrize("digest", [[], ["-sha256"]])
    def test_good(self, openssl, pki, tmp_path, signers, table, now, digest):
        rc, out = self._check(openssl, pki, tmp_path, signers, table, now, "leaf2.pem", "staff.pem", *digest)
        assert rc == 0, out
        assert "Response verify OK" in out and "Cert Status: good" in out
        assert "OCSP Nonce" in out and "Nonce Verify error" not in out
        rc, out = self._summary(
            openssl, pki, tmp_path, signers, table, now, "leaf2.pem", "staff.pem", *digest
        )
        assert rc == 0 and f"{pki.path('leaf2.pem')}: good" in out, out

    def test_revoked(self, openssl, pki, tmp_path, signers, table, now):
        rc, out = self._check(openssl, pki, tmp_path, signers, table, now, "leaf.pem", "staff.pem")
        assert rc == 0 and "Response verify OK" in out, out
        assert "Cert Status: revoked" in out and "Revocation Reason: keyCompromise" in out
        rc, out = self._summary(openssl, pki, tmp_path, signers, table, now, "leaf.pem", "staff.pem")
        assert f"{pki.path('leaf.pem')}: revoked" in out and "Reason: keyCompromise" in out

    def test_revoked_rsa_group(self, openssl, pki, tmp_path, signers, table, now):
        rc, out = self._check(
            openssl, pki, tmp_path, signers, table, now, "guest_leaf.pem", "guests.pem", "-sha256"
        )
        assert rc == 0 and "Response verify OK" in out, out
        assert "Cert Status: revoked" in out and "Revocation Reason" not in out

    def test_unknown(self, openssl, pki, tmp_path, signers, now):
        rc, out = self._check(
            openssl, pki, tmp_path, signers, lambda g, s: UNKNOWN, now, "leaf2.pem", "staff.pem"
        )
        assert rc == 0 and "Response verify OK" in out and "Cert Status: unknown" in out, out

    def test_nonce_mismatch_detected(self, openssl, pki, tmp_path, signers, table, now):
        """Sanity check of the nonce assertion above: a response to another request fails."""
        req, other, resp = tmp_path / "a.der", tmp_path / "b.der", tmp_path / "resp.der"
        for path in (req, other):
            openssl(
                "ocsp",
                "-issuer",
                pki.path("staff.pem"),
                "-cert",
                pki.path("leaf2.pem"),
                "-reqout",
                path,
            )
        resp.write_bytes(respond(other.read_bytes(), table, signers, now))
        p = openssl(
            "ocsp",
            "-respin",
            resp,
            "-reqin",
            req,
            "-CAfile",
            pki.path("root.pem"),
            "-verify_other",
            pki.path("staff.pem"),
            check=False,
        )
        assert p.returncode != 0 and "Nonce Verify error" in p.stdout + p.stderr

    def test_wrong_trust_anchor_fails(self, openssl, pki, tmp_path, signers, table, now):
        req, resp = tmp_path / "req.der", tmp_path / "resp.der"
        openssl("ocsp", "-issuer", pki.path("staff.pem"), "-cert", pki.path("leaf2.pem"), "-reqout", req)
        resp.write_bytes(respond(req.read_bytes(), table, signers, now))
        p = openssl("ocsp", "-respin", resp, "-reqin", req, "-CAfile", pki.path("guests.pem"), check=False)
        assert p.returncode != 0 and "Response verify OK" not in p.stdout + p.stderr

    def test_unauthorized(self, openssl, pki, tmp_path, signers, table, now):
        rc, out = self._check(openssl, pki, tmp_path, signers, table, now, "staff.pem", "root.pem")
        assert "unauthorized" in out.lower()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
class TestOverHttp:
    """A minimal aiohttp route (what certgate/web.py would do) driven by `openssl ocsp -url`."""

    @pytest.fixture
    async def url(self, signers, table, now):
        from aiohttp import web

        async def post(request: web.Request) -> web.Response:
            der = await request.content.read(64 * 1024 + 1)
            return web.Response(body=respond(der, table, signers, now), content_type=CONTENT_TYPE)

        async def get(request: web.Request) -> web.Response:
            try:
                der = decode_get(request.match_info["tail"])
            except MalformedRequest:
                body = unsuccessful(S.MALFORMED_REQUEST)
            else:
                body = respond(der, table, signers, now)
            return web.Response(body=body, content_type=CONTENT_TYPE)

        app = web.Application()
        app.router.add_post("/ocsp", post)
        app.router.add_get("/ocsp/{tail:.*}", get)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/ocsp"
        await runner.cleanup()

    async def _openssl(self, *args) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "openssl",
            *map(str, args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode()

    async def test_post_good_and_revoked(self, url, pki):
        base = (
            "ocsp",
            "-url",
            url,
            "-issuer",
            pki.path("staff.pem"),
            "-CAfile",
            pki.path("root.pem"),
            "-verify_other",
            pki.path("staff.pem"),
        )
        rc, out = await self._openssl(*base, "-cert", pki.path("leaf2.pem"))
        assert rc == 0 and "Response verify OK" in out and ": good" in out, out
        rc, out = await self._openssl(*base, "-cert", pki.path("leaf.pem"))
        assert "Response verify OK" in out and ": revoked" in out, out

    async def test_get(self, url, pki):
        from aiohttp import ClientSession

        der = _request(pki.leaf, pki.staff, nonce=b"k" * 16)
        tail = quote(base64.b64encode(der).decode(), safe="")
        async with ClientSession() as http:
            async with http.get(f"{url}/{tail}") as r:
                assert r.content_type == CONTENT_TYPE
                resp = ocsp.load_der_ocsp_response(await r.read())
            async with http.get(f"{url}/not-base64!") as r:
                bad = ocsp.load_der_ocsp_response(await r.read())
        assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"k" * 16
        assert bad.response_status is S.MALFORMED_REQUEST


class TestResponseCache:
    """Pre-signed no-nonce responses: reused only for the same CertID, the same status and
    within max_age; the status is looked up every time."""

    def _statuses(self, pki, now):
        state = {pki.leaf2.serial_number: GOOD}
        calls: list[int] = []

        def lookup(group: str, serial: int):
            calls.append(serial)
            return state.get(serial, UNKNOWN)

        return state, calls, lookup

    def test_reused_while_unchanged_then_revocation_is_in_the_next_answer(self, pki, now, signers):
        cache = ResponseCache(dt.timedelta(seconds=60))
        state, calls, lookup = self._statuses(pki, now)
        req = _request(pki.leaf2, pki.staff)
        first = answer(req, lookup, signers, now, cache=cache)
        later = answer(req, lookup, signers, now + dt.timedelta(seconds=30), cache=cache)
        assert later.der == first.der and later.next_update == first.next_update == now + H
        assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
        assert calls == [pki.leaf2.serial_number] * 2  # the status is read both times

        state[pki.leaf2.serial_number] = Revoked(now, "key_compromise")
        revoked = answer(req, lookup, signers, now + dt.timedelta(seconds=31), cache=cache)
        r = ocsp.load_der_ocsp_response(revoked.der)
        assert revoked.outcome is Outcome.REVOKED
        assert r.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert r.this_update_utc == now + dt.timedelta(seconds=31)
        pki.staff.public_key().verify(r.signature, r.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        assert len(cache) == 1  # replaced, not added

    def test_signed_again_after_max_age_and_for_another_hash_or_validity(self, pki, now, signers):
        cache = ResponseCache(dt.timedelta(seconds=60))
        _, _, lookup = self._statuses(pki, now)
        req = _request(pki.leaf2, pki.staff)
        first = answer(req, lookup, signers, now, cache=cache)
        stale = answer(req, lookup, signers, now + dt.timedelta(seconds=60), cache=cache)
        assert stale.der != first.der
        assert ocsp.load_der_ocsp_response(stale.der).this_update_utc == now + dt.timedelta(seconds=60)
        sha256 = answer(_request(pki.leaf2, pki.staff, hashes.SHA256()), lookup, signers,
                        now + dt.timedelta(seconds=61), cache=cache)
        assert ocsp.load_der_ocsp_response(sha256.der).hash_algorithm.name == "sha256"
        other_validity = answer(req, lookup, signers, now + dt.timedelta(seconds=62),
                                validity=2 * H, cache=cache)
        assert other_validity.next_update == now + dt.timedelta(seconds=62) + 2 * H
        # a clock that went back does not serve a response from the future
        back = answer(req, lookup, signers, now, cache=cache)
        assert ocsp.load_der_ocsp_response(back.der).this_update_utc == now
        assert cache.hits == 0

    def test_nonce_requests_are_always_signed_and_not_cached(self, pki, now, signers):
        cache = ResponseCache(dt.timedelta(seconds=60))
        _, _, lookup = self._statuses(pki, now)
        answer(_request(pki.leaf2, pki.staff), lookup, signers, now, cache=cache)
        for nonce in (b"\x01" * 16, b"\x02" * 16):
            a = answer(_request(pki.leaf2, pki.staff, nonce=nonce), lookup, signers, now, cache=cache)
            r = ocsp.load_der_ocsp_response(a.der)
            assert r.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        assert (cache.hits, len(cache)) == (0, 1)

    def test_bounded_and_checked(self, pki, now, signers):
        cache = ResponseCache(dt.timedelta(seconds=60), max_entries=2)
        lookup = lambda group, serial: GOOD  # noqa: E731
        for cert, issuer in ((pki.leaf, pki.staff), (pki.leaf2, pki.staff),
                             (pki.guest_leaf, pki.guests)):
            answer(_request(cert, issuer), lookup, signers, now, cache=cache)
        assert len(cache) == 2
        answer(_request(pki.leaf, pki.staff), lookup, signers, now, cache=cache)
        assert cache.hits == 0  # the oldest went first
        # what was signed more than max_age ago goes at the next put, whatever the count
        answer(_request(pki.leaf2, pki.staff), lookup, signers, now + dt.timedelta(seconds=61),
               cache=cache)
        assert len(cache) == 1
        with pytest.raises(ValueError):
            ResponseCache(dt.timedelta(0))
        with pytest.raises(ValueError):
            ResponseCache(dt.timedelta(seconds=1), max_entries=0)
        with pytest.raises(TypeError):
            answer(_request(pki.leaf, pki.staff), lookup, signers, now, cache={})  # type: ignore[arg-type]
