"""The issuance check inside ScepService: asked after the challenge and CSR passed, before
anything is written; a refusal is a signed FAILURE that consumes nothing."""

from __future__ import annotations

import datetime as dt

from enrollment.issuance_check import (
    IssuanceDecision,
    IssuanceQuery,
    IssuanceReason,
    failure,
    no_device_id,
    parse_device_id_source,
)
from enrollment.scep_types import FailInfo, PKIStatus

from .conftest import client_key, make_csr


class Mdm:
    """Records the queries; answers what the test set (the decision function's output)."""

    def __init__(self) -> None:
        self.queries: list[IssuanceQuery] = []
        self.answer: IssuanceDecision = IssuanceDecision(True, "allowed")

    async def __call__(self, query: IssuanceQuery) -> IssuanceDecision:
        self.queries.append(query)
        if query.device_id is None:
            return no_device_id(parse_device_id_source("challenge"))
        return self.answer


async def test_deny_is_a_failure_and_the_challenge_stays_usable(make_harness) -> None:
    h = await make_harness()
    mdm = Mdm()
    h.service.enroller.issuance_check = mdm
    key = client_key(40)
    token = await h.challenge(subject_cn="mdm-01", sans=["dns:mdm-01.example"], device_id="DEV-1")
    csr = make_csr(key, "mdm-01", token, sans=("mdm-01.example",))

    mdm.answer = IssuanceDecision(False, "denied", IssuanceReason.DENIED, "not compliant")
    rep, _ = await h.enroll(csr, key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badRequest
    assert rep.fail_info_text == "issuance_denied"
    (q,) = mdm.queries
    assert (q.group, q.kind, q.device_id, q.subject) == ("staff", "enrollment", "DEV-1", "CN=mdm-01")
    assert q.sans == ("dns:mdm-01.example",)
    assert q.key_fingerprint.startswith("sha256:") and len(q.key_fingerprint) == 7 + 64
    assert await h.store.find(group="staff") == []
    # an MDM error, fail closed: still nothing
    mdm.answer = failure(IssuanceReason.TIMEOUT, "no answer", fail_open=False)
    rep, _ = await h.enroll(csr, key)
    assert rep.fail_info_text == "issuance_check_timeout"
    # the MDM allows: the same challenge enrolls (the refusals consumed nothing)
    mdm.answer = IssuanceDecision(True, "allowed")
    rep, _ = await h.enroll(csr, key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    record = await h.store.get(rep.certificates[0].serial_number)
    assert record.device_id == "DEV-1"
    assert len(mdm.queries) == 3


async def test_fail_open_issues_and_no_device_id_refuses(make_harness) -> None:
    h = await make_harness()
    mdm = Mdm()
    h.service.enroller.issuance_check = mdm
    key = client_key(41)
    mdm.answer = failure(IssuanceReason.UNAVAILABLE, "HTTP 503", fail_open=True)
    rep, _ = await h.enroll(make_csr(key, "open-01", await h.challenge(device_id="D2")), key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    # a challenge without a device id: refused without asking the MDM anything useful
    rep, _ = await h.enroll(make_csr(key, "open-02", await h.challenge()), key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "no_device_id"


async def test_device_id_from_the_csr_and_renewal_asks_too(make_harness) -> None:
    h = await make_harness(device_id_from=parse_device_id_source("subject_cn"),
                           renewal_window=dt.timedelta(days=400))
    mdm = Mdm()
    h.service.enroller.issuance_check = mdm
    key = client_key(42)
    rep, _ = await h.enroll(make_csr(key, "C02XK1", await h.challenge()), key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    old = rep.certificates[0]
    assert (await h.store.get(old.serial_number)).device_id == "C02XK1"
    # a challenge bound to another device than the CSR names
    rep, _ = await h.enroll(make_csr(key, "C02XK1", await h.challenge(device_id="OTHER")), key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "device_id_mismatch"
    # renewal: asked with kind renewal; a deny keeps the old certificate as it is
    mdm.answer = IssuanceDecision(False, "denied", IssuanceReason.DENIED, "retired")
    rep, _ = await h.enroll(make_csr(key, "C02XK1", None), key, signer=old, renewal=True)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "issuance_denied"
    assert mdm.queries[-1].kind == "renewal" and mdm.queries[-1].device_id == "C02XK1"
    assert (await h.store.get(old.serial_number)).superseded_by is None
    mdm.answer = IssuanceDecision(True, "allowed")
    rep, _ = await h.enroll(make_csr(key, "C02XK1", None), key, signer=old, renewal=True)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text


async def test_a_refused_blob_enrolls_later(make_harness) -> None:
    """The blob's ledger row is written before the check, but consumed only with the
    certificate: a refused blob enrolls once the MDM allows."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from enrollment.blob import BlobClaims, mint_blob

    from .conftest import NOW

    cg, mdm_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    h = await make_harness(blob_keys=(cg,), mdm_keys=(mdm_key.public_key(),))
    mdm = Mdm()
    h.service.enroller.issuance_check = mdm
    claims = BlobClaims(group="staff", sub="blob-01", exp=NOW + dt.timedelta(hours=1),
                        nbf=NOW - dt.timedelta(minutes=1), key=("rsa-2048",), device_id="BLOB-1")
    blob = mint_blob(claims, mdm_key, cg.public_key(), NOW)
    key = client_key(43)
    csr = make_csr(key, "blob-01", blob)
    mdm.answer = IssuanceDecision(False, "denied", IssuanceReason.DENIED, "")
    rep, _ = await h.enroll(csr, key)
    assert rep.status is PKIStatus.FAILURE and rep.fail_info_text == "issuance_denied", \
        rep.fail_info_text
    assert mdm.queries[-1].device_id == "BLOB-1"
    mdm.answer = IssuanceDecision(True, "allowed")
    rep, _ = await h.enroll(csr, key)
    assert rep.status is PKIStatus.SUCCESS, rep.fail_info_text
    assert (await h.store.get(rep.certificates[0].serial_number)).device_id == "BLOB-1"
