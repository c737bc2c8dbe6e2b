"""Issue device requests in one process: one store connection, and only the intermediates the
requests name (each key loaded once, without the RSA primality test: `Hierarchy.load_issuer`).

Per device: key generation, signing (verified against the intermediate), the inventory record
committed, and only then the files NAME.key (0600), NAME.crt, NAME.chain.pem (+ NAME.p12) and
the serial reported. Files that already exist fail the request before anything is issued.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certgate.errors import OperatorError
from certgate.issuing.requests import DeviceRequest
from certgate.settings import Settings
from pki.hierarchy import Hierarchy, Issuer
from pki.keys import generate_key
from pki.profiles import name
from store import Store
from store.errors import StoreUnavailable

PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Outcome:
    request: DeviceRequest
    serial: int | None = None  # None: failed, see error
    error: str | None = None


class FileClash(Exception):
    """An output file of this request exists: nothing was issued for it."""


def output_paths(out: Path, cn: str, p12: bool) -> list[Path]:
    names = [f"{cn}.key", f"{cn}.crt", f"{cn}.chain.pem"] + ([f"{cn}.p12"] if p12 else [])
    return [out / n for n in names]


def _write_private(path: Path, data: bytes) -> None:
    if path.exists():
        raise OperatorError(f"{path} exists: refusing to overwrite a private key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class BatchIssuer:
    """`async with BatchIssuer(...) as b: await b.issue(request)` for each request."""

    def __init__(self, settings: Settings, out: Path, *, p12: bool = False,
                 actor: str = "cli:certs-issue", now: Callable[[], dt.datetime]) -> None:
        self.settings = settings
        self.out = out
        self.p12 = p12
        self.actor = actor
        self.now = now
        self.hierarchy = Hierarchy(settings.pki)
        self._issuers: dict[str, Issuer] = {}
        self._root: x509.Certificate | None = None
        self._store: Store | None = None

    def load_issuers(self, groups: set[str]) -> None:
        """Load the named groups' intermediates and keys now (a missing key or wrong
        passphrase fails the whole run before anything is issued)."""
        if self.p12 and self._root is None:
            self._root = self.hierarchy.load_root_certificate()
        for group in sorted(groups - self._issuers.keys()):
            self._issuers[group] = self.hierarchy.load_issuer(group)

    async def __aenter__(self) -> BatchIssuer:
        from certgate.storage import open_configured

        self.out.mkdir(parents=True, exist_ok=True)
        self._store = await open_configured(self.settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._store is not None:
            await self._store.close()

    def clash(self, request: DeviceRequest) -> str | None:
        for path in output_paths(self.out, request.cn, self.p12):
            if path.exists():
                return (f"{path} exists: not issued (remove the files or use another --out to "
                        "issue again)")
        return None

    async def issue(self, request: DeviceRequest) -> x509.Certificate:
        """Issue one request; raises FileClash (nothing issued), OperatorError/PkiError or
        StoreUnavailable (stop the run)."""
        from certgate.bootstrap import issue_device_certificate

        clash = self.clash(request)
        if clash:
            raise FileClash(clash)
        self.load_issuers({request.group})
        issuer = self._issuers[request.group]
        group_settings = self.settings.group(request.group)
        assert group_settings is not None and self._store is not None
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(None, generate_key, request.key_type)
        try:
            cert = await issue_device_certificate(
                self._store, issuer, key.public_key(), name(request.cn), list(request.sans),
                public_url=self.settings.http.public_url,
                days=request.days or group_settings.validity_days, now=self.now(),
                actor=self.actor, source="cli", device_id=request.device_id,
                profile=request.profile,
            )
        except StoreUnavailable as exc:
            raise OperatorError(f"{exc}: nothing issued for {request.where}") from None
        self._write_files(request.cn, key, cert, issuer)  # recorded first: see the docstring
        return cert

    def _write_files(self, cn: str, key, cert: x509.Certificate,  # noqa: ANN001
                     issuer: Issuer) -> None:
        key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        _write_private(self.out / f"{cn}.key", key_pem)
        cert_pem = cert.public_bytes(PEM)
        (self.out / f"{cn}.crt").write_bytes(cert_pem)
        (self.out / f"{cn}.chain.pem").write_bytes(cert_pem + issuer.certificate.public_bytes(PEM))
        if self.p12:
            assert self._root is not None
            data = pkcs12.serialize_key_and_certificates(
                cn.encode(), key, cert, [issuer.certificate, self._root],
                serialization.NoEncryption())
            _write_private(self.out / f"{cn}.p12", data)
