"""Test helpers for the syslog transport: an independent RFC 5424 parser, octet-counted
frame splitting, and a throwaway CA + loopback server certificate for TLS peers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Parsed:
    pri: int
    version: str
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd_id: str
    params: list[tuple[str, str]]
    msg: bytes
    sd_raw: bytes


def parse(raw: bytes) -> Parsed:
    """Parse one RFC 5424 message with a single SD-ELEMENT (written from the grammar)."""
    assert raw.startswith(b"<"), raw[:20]
    end = raw.index(b">")
    pri = int(raw[1:end])
    fields = raw[end + 1:].split(b" ", 6)
    version, ts, host, app, procid, msgid, rest = fields
    assert rest.startswith(b"["), rest[:40]
    i = 1
    sd_id_end = min(p for p in (rest.find(b" ", i), rest.find(b"]", i)) if p >= 0)
    sd_id = rest[i:sd_id_end].decode()
    i = sd_id_end
    params: list[tuple[str, str]] = []
    while rest[i:i + 1] == b" ":
        eq = rest.index(b"=", i)
        name = rest[i + 1:eq].decode("ascii")
        assert rest[eq + 1:eq + 2] == b'"'
        j = eq + 2
        value = bytearray()
        while rest[j:j + 1] != b'"':
            if rest[j:j + 1] == b"\\" and rest[j + 1:j + 2] in (b'"', b"\\", b"]"):
                value += rest[j + 1:j + 2]
                j += 2
            else:
                assert rest[j:j + 1] != b"]", f"unescaped ] in {name}"
                value += rest[j:j + 1]
                j += 1
        params.append((name, value.decode("utf-8")))
        i = j + 1
    assert rest[i:i + 1] == b"]", rest[i:i + 20]
    sd_raw = rest[:i + 1]
    msg = rest[i + 2:] if rest[i + 1:i + 2] == b" " else b""
    return Parsed(pri, version.decode(), ts.decode(), host.decode(), app.decode(),
                  procid.decode(), msgid.decode(), sd_id, params, msg, sd_raw)


def flat_strings(event: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """SD-PARAM name -> value as documented: dotted keys (over 32 octets: without the
    ``certgate.`` prefix), strings as they are, anything else as JSON."""
    out: dict[str, str] = {}
    for k, v in event.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flat_strings(v, f"{name}."))
        else:
            if len(name) > 32 and name.startswith("certgate."):
                name = name.removeprefix("certgate.")
            out[name] = v if isinstance(v, str) else json.dumps(
                v, separators=(",", ":"), ensure_ascii=False)
    return out


def split_frames(data: bytes) -> list[bytes]:
    """Octet-counted frames (MSG-LEN SP MSG) back to messages; asserts nothing is left over."""
    out = []
    while data:
        sp = data.index(b" ")
        n = int(data[:sp])
        out.append(data[sp + 1:sp + 1 + n])
        assert len(out[-1]) == n, "short frame"
        data = data[sp + 1 + n:]
    return out


def make_tls_files(directory: Path, name: str = "srv") -> tuple[Path, Path, Path]:
    """(ca.pem, server cert.pem, server key.pem): a CA and a cert for 127.0.0.1/localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test syslog CA {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / f"{name}-ca.pem", directory / f"{name}-cert.pem",
             directory / f"{name}-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths
