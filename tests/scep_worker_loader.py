"""A loader for enrollment.scep_crypto.ProcessCrypto workers in tests: one group's keys from
PEM files (what certgate.scep_http.load_group_crypto does from the PKI directory). It lives
in an importable module because spawned workers import it by name."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from enrollment.scep_crypto import GroupCrypto
from enrollment.scep_enroll import ServiceConfig
from pki.groups import Group, GroupTable
from pki.hierarchy import GroupCa

FILES = ("ca.pem", "ca.key", "ra.pem", "ra.key")
SECRET = b"s" * 32


def write_pki(directory: Path, ca: GroupCa) -> None:
    def key(k) -> bytes:  # noqa: ANN001
        return k.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    for name, data in zip(FILES, (ca.certificate.public_bytes(Encoding.PEM), key(ca.key),
                                  ca.ra_certificate.public_bytes(Encoding.PEM), key(ca.ra_key)),
                          strict=True):
        (directory / name).write_bytes(data)


def config(group: str) -> ServiceConfig:
    return ServiceConfig(group=group, public_url="http://pki.test", challenge_secret=SECRET)


class CrashOnSign(GroupCrypto):
    def sign_device(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        os._exit(3)  # a worker dying hard (OOM kill, segfault)


def load(directory: str, crash_on_sign: bool = False) -> dict[str, GroupCrypto]:
    d = Path(directory)
    cert, key, ra, ra_key = (d / f for f in FILES)
    ca = GroupCa("staff", x509.load_pem_x509_certificate(cert.read_bytes()),
                 load_pem_private_key(key.read_bytes(), None),  # type: ignore[arg-type]
                 x509.load_pem_x509_certificate(ra.read_bytes()),
                 load_pem_private_key(ra_key.read_bytes(), None))  # type: ignore[arg-type]
    cls = CrashOnSign if crash_on_sign else GroupCrypto
    return {"staff": cls(config("staff"), ca, GroupTable([Group("staff", ca.certificate)]))}
