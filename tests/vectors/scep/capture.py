"""Throwaway SCEP capture server used to record the vectors in this folder.

Not imported by tests. It answers GetCACaps and GetCACert (a degenerate PKCS#7
of ra-test.cert.pem + ca-test.cert.pem) and saves every PKIOperation (POST body
or GET ``message=``, base64-decoded) under --out, then answers HTTP 500 so the
client stops. Usage:

    .venv/bin/python tests/vectors/scep/capture.py --generate   # new test RA/CA (once)
    .venv/bin/python tests/vectors/scep/capture.py --port 18099 --out /tmp/capture &
    scepclient -server-url http://127.0.0.1:18099/scep -private-key K -cn dev-01 \
        -challenge secret123
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.server
import pathlib
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = pathlib.Path(__file__).parent
CAPS = b"POSTPKIOperation\nSHA-256\nSHA-512\nAES\nRenewal\nSCEPStandard\n"


def generate() -> None:
    """Test CA (RSA-2048) and an RA cert it issued (digitalSignature+keyEncipherment)."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(2046, 1, 1, tzinfo=datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ra = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certgate test RA")]))
        .issuer_name(ca_name)
        .public_key(ra_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (HERE / "ca-test.cert.pem").write_bytes(ca.public_bytes(pem))
    (HERE / "ra-test.cert.pem").write_bytes(ra.public_bytes(pem))
    (HERE / "ra-test.key.pem").write_bytes(
        ra_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def serve(port: int, out: pathlib.Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs7

    certs = [
        x509.load_pem_x509_certificate((HERE / n).read_bytes())
        for n in ("ra-test.cert.pem", "ca-test.cert.pem")
    ]
    ca_ra = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
    out.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 1000))

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _save(self, method: str, body: bytes) -> None:
            path = out / f"pkioperation-{next(counter):02d}-{method}.der"
            path.write_bytes(body)
            self.log_message("saved %s (%d bytes)", path, len(body))
            self._reply(500, "text/plain", b"captured\n")

        def do_GET(self) -> None:  # noqa: N802
            raw_query = urllib.parse.urlsplit(self.path).query
            query = urllib.parse.parse_qs(raw_query)
            op = query.get("operation", [""])[0]
            if op == "GetCACaps":
                self._reply(200, "text/plain", CAPS)
            elif op == "GetCACert":
                self._reply(200, "application/x-x509-ca-ra-cert", ca_ra)
            elif op == "PKIOperation":
                # Read the raw value: '+' must not become a space.
                raw = [p for p in raw_query.split("&") if p.startswith("message=")][0]
                b64 = urllib.parse.unquote(raw[len("message=") :])
                b64 = "".join(b64.split()).replace("-", "+").replace("_", "/")
                self._save("GET", base64.b64decode(b64 + "=" * (-len(b64) % 4)))
            else:
                self._reply(404, "text/plain", b"unknown operation\n")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._save("POST", body)

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--port", type=int, default=18099)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/scep-capture"))
    args = ap.parse_args()
    if args.generate:
        generate()
    else:
        serve(args.port, args.out)


if __name__ == "__main__":
    main()
