"""What `certgate check-config` checks on disk: the PKI files the config refers to.

Every problem is one line naming the file, what is wrong and the fix, and all of them are
reported at once (an operator at 3 a.m. wants the whole list, not one per run). Time and the
running user are arguments. Nothing here writes; private keys are read only to check that
they open and match their certificate (the RSA primality test is skipped, as for one-shot
signing: `load_private_key(check_primes=False)`), and their content is never shown.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.config import GroupConfig, PkiConfig
from pki.errors import PkiError
from pki.hierarchy import Hierarchy, passphrase_for
from pki.keys import load_private_key

INIT = "run `certgate init` (it creates only what is missing)"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _renew(files: str, runbook: str | None = None) -> str:
    see = f"; see docs/runbook.md, {runbook}" if runbook else ""
    return f"move {files} aside and {INIT}{see}"


class _Checker:
    def __init__(self, settings: PkiConfig, now: dt.datetime, uid: int) -> None:
        self.dir = settings.dir
        self.now = now
        self.uid = uid
        self.problems: list[str] = []
        self.passphrase: bytes | None = None
        self.passphrase_ok = True
        try:
            self.passphrase = passphrase_for(settings)
        except PkiError as exc:
            self.passphrase_ok = False
            self.problems.append(f"[pki] passphrase: {exc} (keys not opened)")

    def problem(self, path: Path, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def certificate(self, path: Path, fix_missing: str = INIT, key: Path | None = None
                    ) -> x509.Certificate | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if key is not None and key.exists():  # init would refuse to overwrite the key
                fix_missing = (f"restore it from backup, or move {key} aside too and {INIT}")
            self.problem(path, f"missing: {fix_missing}")
            return None
        except OSError as exc:
            self.problem(path, f"cannot be read ({exc.strerror}): check its owner and mode")
            return None
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError:
            self.problem(path, "is not a PEM certificate: restore it from backup")
            return None

    def validity(self, path: Path, cert: x509.Certificate, renew: str) -> None:
        if cert.not_valid_after_utc <= self.now:
            self.problem(path, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: "
                         f"{renew}")
        elif cert.not_valid_before_utc > self.now:
            self.problem(path, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                         "UTC: check this host's clock")

    def issued_by(self, path: Path, cert: x509.Certificate, issuer: x509.Certificate | None,
                  issuer_path: Path, fix: str) -> None:
        if issuer is None:
            return
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, Exception):  # InvalidSignature, name or key mismatch
            self.problem(path, f"is not issued by {issuer_path}: {fix}")

    def key(self, path: Path, cert: x509.Certificate | None, *, required: bool = True,
            fix_missing: str = INIT) -> None:
        """Present (if required), mode 0600, owned by the running user, opens, matches."""
        try:
            info = path.stat()
        except FileNotFoundError:
            if required:
                self.problem(path, f"missing: {fix_missing}")
            return
        except OSError as exc:
            self.problem(path, f"cannot be read ({exc.strerror}): check its owner and mode")
            return
        mode = info.st_mode & 0o777
        if mode & 0o077:
            self.problem(path, f"has mode {mode:o}, readable by others than its owner: "
                         f"run `chmod 600 {path}`")
        if info.st_uid != self.uid:
            self.problem(path, f"is owned by uid {info.st_uid}, not by the user running "
                         f"certgate (uid {self.uid}): run `chown {self.uid} {path}` or run "
                         "certgate as that user")
        if not self.passphrase_ok or mode & 0o077:
            return
        try:
            key = load_private_key(path, self.passphrase, check_primes=False)
        except PkiError as exc:
            self.problems.append(str(exc))
            return
        if cert is not None and key.public_key().public_bytes(*_SPKI) != \
                cert.public_key().public_bytes(*_SPKI):
            self.problem(path, "does not match its certificate: restore the pair from backup")

    def secret_file(self, path: Path) -> None:
        """The SCEP challenge MAC key: raw bytes, not a PEM key."""
        try:
            info = path.stat()
        except FileNotFoundError:
            self.problem(path, f"missing (dynamic SCEP challenges are off without it): {INIT}")
            return
        mode = info.st_mode & 0o777
        if mode & 0o077:
            self.problem(path, f"has mode {mode:o}: run `chmod 600 {path}`")
        if info.st_uid != self.uid:
            self.problem(path, f"is owned by uid {info.st_uid}, not by the user running "
                         f"certgate (uid {self.uid}): run `chown {self.uid} {path}`")
        if info.st_size < 32:
            self.problem(path, f"is shorter than 32 bytes: remove it and {INIT} "
                         "(open challenges stop working)")


def server_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def check_state(settings: PkiConfig, groups: Iterable[GroupConfig], now: dt.datetime,
                uid: int | None = None) -> list[str]:
    """Every problem of the PKI under `settings.dir`, one line each; [] when all is well."""
    c = _Checker(settings, now, os.getuid() if uid is None else uid)
    h = Hierarchy(settings)
    if not h.dir.is_dir():
        return [*c.problems, f"{h.dir}: no PKI directory ([pki] dir): {INIT}"]

    root = c.certificate(h.root_cert_path)
    if root is not None:
        c.validity(h.root_cert_path, root, "issue a new root and re-enroll every device "
                   "(escalate)")
    c.key(h.root_key_path, root, required=False)  # an imported root may come without its key

    server_path = h.dir / "server.crt"
    server_fix = _renew("server.crt, server.key and server-chain.pem",
                        "CertgateServerCertificateExpiring")
    server = c.certificate(server_path, key=h.dir / "server.key")
    if server is not None:
        c.validity(server_path, server, server_fix)
        c.issued_by(server_path, server, root, h.root_cert_path, server_fix)
        names = server_names(server)
        if settings.server_name not in names:
            c.problem(server_path, f"does not name [pki] server_name {settings.server_name!r} "
                      f"(its DNS names: {', '.join(names) or 'none'}): set server_name to the "
                      f"name devices pin, or {server_fix}")
    c.key(h.dir / "server.key", server)
    chain = h.dir / "server-chain.pem"
    c.certificate(chain, f"`cp {server_path} {chain}` (the certificates the server sends: "
                  "its own, then any intermediate under the root)")

    for g in groups:
        gdir = h.group_dir(g.name)
        ca_path = gdir / "ca.crt"
        ca = c.certificate(ca_path, f"{INIT}, or bring your own with `certgate ca import "
                           f"--group {g.name}`", key=gdir / "ca.key")
        if ca is not None:
            c.validity(ca_path, ca, "the group's devices need a new intermediate (escalate; see "
                       "docs/runbook.md, CertgateCaCertificateExpiring)")
            c.issued_by(ca_path, ca, root, h.root_cert_path,
                        f"restore group {g.name}'s intermediate from backup")
        c.key(gdir / "ca.key", ca, fix_missing="restore it from backup (devices of the group "
              "hold certificates it signed)" if ca is not None else INIT)
        ra_path = gdir / "ra.crt"
        ra = c.certificate(ra_path, key=gdir / "ra.key")
        ra_fix = _renew(f"{ra_path} and {gdir / 'ra.key'}")
        if ra is not None:
            c.validity(ra_path, ra, ra_fix)
            c.issued_by(ra_path, ra, ca, ca_path, ra_fix)
        c.key(gdir / "ra.key", ra)

    c.secret_file(h.challenge_secret_path)
    c.key(h.blob_key_path, None, fix_missing=f"{INIT} (MDM challenge blobs need it)")
    return c.problems
