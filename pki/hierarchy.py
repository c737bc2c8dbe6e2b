"""The CA hierarchy on disk: one root, one intermediate per group, RADIUS server cert, RA certs.

Layout under `[pki] dir`:
    root.crt root.key
    server.crt server.key server-chain.pem      (RADIUS server, issued by the root)
    groups/<group>/ca.crt ca.key                (group intermediate)
    groups/<group>/ra.crt ra.key                (SCEP RA, RSA, issued by the group CA)
    scep-challenge.secret                       (32 random bytes: MAC key of dynamic challenges)
    blob.key blob.pub.pem                       (P-256: MDM challenge blobs are encrypted to it)
`init` never overwrites a key: it only creates what is missing.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki import profiles
from pki.config import GroupConfig, PkiConfig
from pki.errors import PkiError
from pki.groups import Group, GroupTable, ReplyAttributes
from pki.keys import PrivateKey, generate_key, load_private_key, write_private_key

PEM = serialization.Encoding.PEM


def passphrase_for(settings: PkiConfig) -> bytes | None:
    if settings.passphrase_env:
        value = os.environ.get(settings.passphrase_env)
        if not value:
            raise PkiError(
                f"[pki] passphrase_env names {settings.passphrase_env}, which is not set: "
                "export it before running certgate",
                exit_code=2,
            )
        return value.encode()
    if settings.passphrase_file:
        try:
            return settings.passphrase_file.read_bytes().strip()
        except OSError as exc:
            raise PkiError(
                f"cannot read [pki] passphrase_file {settings.passphrase_file}: {exc.strerror}",
                exit_code=2,
            ) from None
    return None


def read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(f"certificate {path} is missing: run `certgate init`") from None
    except ValueError:
        raise PkiError(f"{path} is not a PEM certificate") from None


def write_certificate(path: Path, *certs: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(b"".join(c.public_bytes(PEM) for c in certs))
    tmp.replace(path)


@dataclass(frozen=True)
class Issuer:
    """What signing a device certificate needs, and nothing more: one group's intermediate and
    its key (`Hierarchy.load_issuer`; the CLI loads only the groups it issues from)."""

    name: str
    certificate: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True)
class GroupCa:
    name: str
    certificate: x509.Certificate
    key: PrivateKey
    ra_certificate: x509.Certificate
    ra_key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class LoadedPki:
    root: x509.Certificate
    server_certificate: x509.Certificate
    server_key: PrivateKey
    server_chain: tuple[x509.Certificate, ...]  # extra certs sent after the leaf
    groups: dict[str, GroupCa]
    challenge_secret: bytes | None = None  # None: PKI made before SCEP; `certgate init` adds it
    blob_key: ec.EllipticCurvePrivateKey | None = None

    def group_table(self, group_settings: tuple[GroupConfig, ...]) -> GroupTable:
        return GroupTable(
            Group(
                name=g.name,
                intermediate=self.groups[g.name].certificate,
                reply=reply_attributes(g),
            )
            for g in group_settings
        )


def reply_attributes(g: GroupConfig) -> ReplyAttributes:
    """A group's Access-Accept settings as RADIUS holds them."""
    return ReplyAttributes(
        vlan=g.vlan,
        filter_id=g.filter_id,
        class_value=g.class_value,
        session_timeout=g.session_timeout,
        extra=tuple(g.reply),
        quarantine_extra=tuple(g.quarantine_reply),
        quarantine_vlan=g.quarantine_vlan,
        quarantine_filter_id=g.quarantine_filter_id,
    )


@dataclass
class InitReport:
    created: list[str]
    kept: list[str]
    issued: list[tuple[str, x509.Certificate]]  # (profile, certificate) to record in the store


class Hierarchy:
    def __init__(self, settings: PkiConfig) -> None:
        self.settings = settings
        self.dir = settings.dir

    # paths
    @property
    def root_cert_path(self) -> Path:
        return self.dir / "root.crt"

    @property
    def root_key_path(self) -> Path:
        return self.dir / "root.key"

    def group_dir(self, group: str) -> Path:
        return self.dir / "groups" / group

    def exists(self) -> bool:
        return self.root_cert_path.exists()

    def init(
        self,
        groups: tuple[GroupConfig, ...],
        now: dt.datetime,
        import_root: tuple[Path, Path | None] | None = None,
    ) -> InitReport:
        s = self.settings
        report = InitReport([], [], [])
        passphrase = passphrase_for(s)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

        if import_root is not None:
            if self.root_cert_path.exists():
                raise PkiError(f"{self.root_cert_path} exists: refusing to replace the root")
            self._import_root(*import_root, passphrase)
            report.created.append("root (imported)")

        root_key: PrivateKey | None = None
        if self.root_cert_path.exists():
            root = read_certificate(self.root_cert_path)
            report.kept.append("root")
        else:
            root_key = generate_key(s.key_type)
            write_private_key(self.root_key_path, root_key, passphrase)
            root = profiles.root_certificate(
                root_key, s.root_common_name, s.organization, now, s.root_validity_days
            )
            write_certificate(self.root_cert_path, root)
            report.created.append("root")

        def need_root_key() -> PrivateKey:
            nonlocal root_key
            if root_key is None:
                if not self.root_key_path.exists():
                    raise PkiError(
                        f"the root key {self.root_key_path} is not here (imported root without "
                        "key): import the missing intermediates with `certgate ca import`"
                    )
                root_key = load_private_key(self.root_key_path, passphrase)
            return root_key

        server_cert_path = self.dir / "server.crt"
        if server_cert_path.exists():
            report.kept.append("server")
        else:
            server_key = generate_key(s.key_type)
            write_private_key(self.dir / "server.key", server_key, passphrase)
            cert = profiles.server_certificate(
                server_key.public_key(), s.server_name, root, need_root_key(), now,
                s.server_validity_days,
            )
            write_certificate(server_cert_path, cert)
            write_certificate(self.dir / "server-chain.pem", cert)
            report.created.append(f"server ({s.server_name})")
            report.issued.append(("server", cert))

        for g in groups:
            gdir = self.group_dir(g.name)
            ca_path = gdir / "ca.crt"
            if ca_path.exists():
                report.kept.append(f"group {g.name}")
                ca_cert = read_certificate(ca_path)
                ca_key = None
            else:
                ca_key = generate_key(g.ca_key_type or s.key_type)
                write_private_key(gdir / "ca.key", ca_key, passphrase)
                ca_cert = profiles.intermediate_certificate(
                    ca_key, g.name, s.organization, root, need_root_key(), now,
                    s.intermediate_validity_days,
                )
                write_certificate(ca_path, ca_cert)
                report.created.append(f"group {g.name} intermediate")
            if not (gdir / "ra.crt").exists():
                if ca_key is None:
                    ca_key = load_private_key(gdir / "ca.key", passphrase)
                ra_key = generate_key(s.ra_key_type)
                write_private_key(gdir / "ra.key", ra_key, passphrase)
                ra = profiles.ra_certificate(
                    ra_key.public_key(), g.name, s.organization, ca_cert, ca_key, now,
                    min(s.intermediate_validity_days, 730),
                )
                write_certificate(gdir / "ra.crt", ra)
                report.created.append(f"group {g.name} SCEP RA")
                report.issued.append((f"ra:{g.name}", ra))
        self._init_scep_secrets(report, passphrase)
        return report

    @property
    def challenge_secret_path(self) -> Path:
        return self.dir / "scep-challenge.secret"

    @property
    def blob_key_path(self) -> Path:
        return self.dir / "blob.key"

    def _init_scep_secrets(self, report: InitReport, passphrase: bytes | None) -> None:
        if self.challenge_secret_path.exists():
            report.kept.append("scep challenge secret")
        else:
            fd = os.open(self.challenge_secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
            report.created.append("scep challenge secret")
        if self.blob_key_path.exists():
            report.kept.append("scep blob key")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            write_private_key(self.blob_key_path, key, passphrase)
            (self.dir / "blob.pub.pem").write_bytes(key.public_key().public_bytes(
                PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            report.created.append("scep blob key (blob.pub.pem for MDMs)")

    def _load_scep_secrets(
        self, passphrase: bytes | None
    ) -> tuple[bytes | None, ec.EllipticCurvePrivateKey | None]:
        secret = None
        if self.challenge_secret_path.exists():
            mode = self.challenge_secret_path.stat().st_mode & 0o777
            if mode & 0o077:
                raise PkiError(f"{self.challenge_secret_path} has mode {mode:o}: run "
                                    f"`chmod 600 {self.challenge_secret_path}`")
            secret = self.challenge_secret_path.read_bytes()
            if len(secret) < 32:
                raise PkiError(f"{self.challenge_secret_path} is shorter than 32 bytes: "
                                    "remove it and run `certgate init` (open challenges die)")
        blob_key = None
        if self.blob_key_path.exists():
            key = load_private_key(self.blob_key_path, passphrase)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PkiError(f"{self.blob_key_path} must be a P-256 key")
            blob_key = key
        return secret, blob_key

    def _import_root(self, cert_path: Path, key_path: Path | None, passphrase: bytes | None) -> None:
        root = read_certificate(cert_path)
        if root.issuer != root.subject:
            raise PkiError(f"{cert_path} is not self-signed: give the root CA certificate")
        bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            raise PkiError(f"{cert_path} is not a CA certificate (basicConstraints CA:false)")
        if key_path is not None:
            key = load_private_key(key_path, None)
            if key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != root.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ):
                raise PkiError(f"{key_path} does not match {cert_path}")
            write_private_key(self.root_key_path, key, passphrase)
        write_certificate(self.root_cert_path, root)

    def import_intermediate(self, group: str, cert_path: Path, key_path: Path) -> x509.Certificate:
        """Bring your own intermediate: it must be a CA directly under our root."""
        gdir = self.group_dir(group)
        if (gdir / "ca.crt").exists():
            raise PkiError(f"group {group} already has an intermediate at {gdir / 'ca.crt'}")
        root = read_certificate(self.root_cert_path)
        cert = read_certificate(cert_path)
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, Exception):
            raise PkiError(f"{cert_path} is not issued by the root {self.root_cert_path}") from None
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            raise PkiError(f"{cert_path} is not a CA certificate")
        key = load_private_key(key_path, None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key(
        ).public_bytes(serialization.Encoding.DER, spki):
            raise PkiError(f"{key_path} does not match {cert_path}")
        write_private_key(gdir / "ca.key", key, passphrase_for(self.settings))
        write_certificate(gdir / "ca.crt", cert)
        return cert

    def load(self, groups: tuple[GroupConfig, ...]) -> LoadedPki:
        if not self.exists():
            raise PkiError(
                f"no PKI at {self.dir}: run `certgate init --config FILE` first"
            )
        passphrase = passphrase_for(self.settings)
        root = read_certificate(self.root_cert_path)
        server = read_certificate(self.dir / "server.crt")
        server_key = load_private_key(self.dir / "server.key", passphrase)
        loaded: dict[str, GroupCa] = {}
        for g in groups:
            gdir = self.group_dir(g.name)
            if not (gdir / "ca.crt").exists():
                raise PkiError(
                    f"group {g.name} has no intermediate CA yet: run `certgate init` "
                    "(it creates only what is missing)"
                )
            ra_key = load_private_key(gdir / "ra.key", passphrase)
            assert isinstance(ra_key, rsa.RSAPrivateKey)
            loaded[g.name] = GroupCa(
                name=g.name,
                certificate=read_certificate(gdir / "ca.crt"),
                key=load_private_key(gdir / "ca.key", passphrase),
                ra_certificate=read_certificate(gdir / "ra.crt"),
                ra_key=ra_key,
            )
        chain = tuple(
            x509.load_pem_x509_certificates((self.dir / "server-chain.pem").read_bytes())[1:]
        )
        secret, blob_key = self._load_scep_secrets(passphrase)
        return LoadedPki(root, server, server_key, chain, loaded, secret, blob_key)

    def load_issuer(self, group: str) -> Issuer:
        """One group's intermediate and key, for one-shot signing. The RSA primality test is
        skipped (`load_private_key(check_primes=False)`: the key was validated when `init` or
        `ca import` wrote it, and every signature is verified after signing); the key must
        match the certificate."""
        gdir = self.group_dir(group)
        if not (gdir / "ca.crt").exists():
            raise PkiError(f"group {group} has no intermediate CA yet: run `certgate init` "
                           "(it creates only what is missing)")
        cert = read_certificate(gdir / "ca.crt")
        key = load_private_key(gdir / "ca.key", passphrase_for(self.settings), check_primes=False)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key(
        ).public_bytes(serialization.Encoding.DER, spki):
            raise PkiError(f"{gdir / 'ca.key'} does not match {gdir / 'ca.crt'}: restore the "
                           "pair from backup")
        return Issuer(group, cert, key)

    def load_root_certificate(self) -> x509.Certificate:
        if not self.exists():
            raise PkiError(f"no PKI at {self.dir}: run `certgate init --config FILE` first")
        return read_certificate(self.root_cert_path)

    def load_certificates_only(self, groups: tuple[GroupConfig, ...]) -> dict[str, x509.Certificate]:
        """Intermediates without keys (for listing)."""
        return {
            g.name: read_certificate(self.group_dir(g.name) / "ca.crt")
            for g in groups
            if (self.group_dir(g.name) / "ca.crt").exists()
        }
