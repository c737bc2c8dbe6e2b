"""A group CA (EC) with an RSA RA, a temporary store and a client that drives ScepService
in memory with the pure `enrollment.scep_client`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AttributeOID, NameOID

from enrollment import scep_client
from enrollment.challenge_store import create_dynamic
from enrollment.scep_client import CertRepResult, ClientRequest, RequestOptions
from enrollment.scep_enroll import ServiceConfig
from enrollment.scep_service import ScepService
from pki import profiles
from pki.groups import Group, GroupTable
from pki.hierarchy import GroupCa
from store import Store, open_store

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
SECRET = b"s" * 32


@cache
def _root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return profiles.root_certificate(key, "Test Root", "t", NOW - dt.timedelta(days=1), 3650), key


@cache
def group_ca(name: str, ca_key_type: str = "ec") -> GroupCa:
    root, root_key = _root()
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if ca_key_type == "rsa"
           else ec.generate_private_key(ec.SECP256R1()))
    ca = profiles.intermediate_certificate(key, name, "t", root, root_key, NOW - dt.timedelta(days=1),
                                           3000)
    ra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ra = profiles.ra_certificate(ra_key.public_key(), name, "t", ca, key, NOW - dt.timedelta(days=1),
                                 700)
    return GroupCa(name, ca, key, ra, ra_key)


@cache
def client_key(i: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_csr(key: rsa.RSAPrivateKey, cn: str, challenge: str | None, *, ca: bool = False,
             sans: tuple[str, ...] = (), hash_alg: hashes.HashAlgorithm | None = None
             ) -> x509.CertificateSigningRequest:
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if challenge is not None:
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    if isinstance(hash_alg, hashes.SHA1):
        return sha1_resigned(b.sign(key, hashes.SHA256()), key)
    return b.sign(key, hash_alg or hashes.SHA256())


def sha1_resigned(csr: x509.CertificateSigningRequest, key: rsa.RSAPrivateKey
                  ) -> x509.CertificateSigningRequest:
    """The same CSR signed sha1WithRSAEncryption (cryptography >= 45 refuses to sign with
    SHA-1; RSA's own primitive still does): what strongSwan pki --digest sha1 or micromdm
    scepclient send."""
    from asn1crypto import core
    from asn1crypto import csr as asn1_csr
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import Encoding

    req = asn1_csr.CertificationRequest.load(csr.public_bytes(Encoding.DER))
    info = req["certification_request_info"]
    signature = key.sign(info.dump(), padding.PKCS1v15(), hashes.SHA1())
    resigned = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha1_rsa", "parameters": core.Null()},
        "signature": signature})
    return x509.load_der_x509_csr(resigned.dump())


@dataclasses.dataclass
class Harness:
    service: ScepService
    store: Store
    ca: GroupCa
    now: dt.datetime = NOW

    async def challenge(self, **kw) -> str:  # noqa: ANN003
        created = await create_dynamic(self.store, SECRET, self.service.cfg.group, now=self.now,
                                       actor="test", **kw)
        return created.token

    async def send(self, req: ClientRequest, key: rsa.RSAPrivateKey, signer: x509.Certificate
                   ) -> CertRepResult:
        reply = await self.service.pki_operation(req.der)
        return scep_client.parse_cert_rep(reply.body, signer, key, ra_cert=self.service.signer_cert,
                                          request=req)

    async def enroll(self, csr: x509.CertificateSigningRequest, key: rsa.RSAPrivateKey, *,
                     signer: x509.Certificate | None = None, signer_key: rsa.RSAPrivateKey | None = None,
                     renewal: bool = False, transaction_id: str | None = None,
                     options: RequestOptions | None = None) -> tuple[CertRepResult, ClientRequest]:
        signer = signer or scep_client.self_signed_signer(key, csr.subject, self.now)
        signer_key = signer_key or key
        req = scep_client.build_pkcs_req(csr, signer, signer_key, self.service.signer_cert,
                                         renewal=renewal, transaction_id=transaction_id,
                                         options=options or RequestOptions(signing_time=self.now))
        return await self.send(req, signer_key, signer), req


@pytest.fixture
def executor():
    ex = ThreadPoolExecutor(2)
    yield ex
    ex.shutdown()


@pytest.fixture
async def make_harness(tmp_path: Path, executor):
    stores: list[Store] = []
    revoked: list[tuple[int, str, str]] = []

    async def make(name: str = "staff", ca_key_type: str = "ec", **cfg) -> Harness:  # noqa: ANN003
        store = await open_store(tmp_path / f"{name}-{len(stores)}.sqlite")
        stores.append(store)
        ca = group_ca(name, ca_key_type)
        names = dict.fromkeys([name, "staff", "other"])
        groups = GroupTable(Group(n, group_ca(n, ca_key_type if n == name else "ec").certificate)
                            for n in names)
        config = ServiceConfig(group=name, public_url="http://pki.test", challenge_secret=SECRET,
                               **cfg)

        async def revoke(serial: int, reason: str, actor: str) -> None:
            revoked.append((serial, reason, actor))
            await store.revoke(serial, reason, actor)

        async def crl() -> bytes:
            from cryptography.hazmat.primitives.serialization import Encoding

            built = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
                     .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
                     .sign(ca.key, hashes.SHA256()))
            return built.public_bytes(Encoding.DER)

        service = ScepService(config, ca, _root()[0], groups, store, executor, crl_source=crl,
                              revoke=revoke, clock=lambda: NOW)
        h = Harness(service, store, ca)
        h.revoked = revoked  # type: ignore[attr-defined]
        return h

    yield make
    for s in stores:
        await s.close()
