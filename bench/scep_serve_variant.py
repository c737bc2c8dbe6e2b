"""`certgate serve` with a candidate fix monkeypatched in (product code untouched), for
bench/scep_load.py --variant. Measures what a fix would buy before anyone writes it.

    .venv/bin/python bench/scep_serve_variant.py --variant V[,V...] --config FILE

Variants:
  switch1ms   sys.setswitchinterval(0.001): a thread waiting for the GIL (the event loop
              with a RADIUS packet ready) gets it after <= 1 ms instead of <= 5 ms
  workers1    certgate.scep_http.EXECUTOR_WORKERS = 1 (one SCEP crypto thread, not 2)
  procpool    ScepService._open and ._build (parse/verify/decrypt, build/sign the CertRep)
              and the certificate signing of pki/issuance.py run in a 2-process pool
              (spawn; each worker loads the PKI itself, private keys never cross the pipe;
              certificates/CSRs/names cross as DER through copyreg reducers), so the event
              loop no longer shares its GIL with SCEP crypto
  procpool_nice  procpool with the workers at nice 10: on a saturated machine the kernel
              runs the event loop (RADIUS) first
"""

from __future__ import annotations

import argparse
import asyncio
import copyreg
import sys
from concurrent.futures import Executor
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    PublicFormat,
    load_der_public_key,
)

_SERVICES: dict = {}
_PKI = None
_DEVICE_CERTIFICATE = None


def _load_cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _load_csr(der: bytes) -> x509.CertificateSigningRequest:
    return x509.load_der_x509_csr(der)


def _load_oid(dotted: str) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(dotted)


def _load_pub(der: bytes):  # noqa: ANN202
    return load_der_public_key(der)


def _register_reducers() -> None:
    """DER round trips for the cryptography objects the SCEP steps pass around."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def cert(c):  # noqa: ANN001, ANN202
        return _load_cert, (c.public_bytes(Encoding.DER),)

    def csr(c):  # noqa: ANN001, ANN202
        return _load_csr, (c.public_bytes(Encoding.DER),)

    def oid(o):  # noqa: ANN001, ANN202
        return _load_oid, (o.dotted_string,)

    def pub(k):  # noqa: ANN001, ANN202
        return _load_pub, (k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),)

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    import datetime as dt

    c = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
         .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1))
         .not_valid_after(dt.datetime(2030, 1, 1)).sign(k, hashes.SHA256()))
    r = x509.CertificateSigningRequestBuilder().subject_name(n).sign(k, hashes.SHA256())
    copyreg.pickle(type(c), cert)
    copyreg.pickle(type(r), csr)
    copyreg.pickle(type(x509.ObjectIdentifier("1.2.3")), oid)
    copyreg.pickle(type(k.public_key()), pub)
    rk = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    copyreg.pickle(type(rk.public_key()), pub)


def _worker_init(config: str, nice: int = 0) -> None:
    global _PKI, _DEVICE_CERTIFICATE
    if nice:
        import os

        os.nice(nice)  # the kernel then prefers the event loop's process when CPUs are busy
    _register_reducers()
    from certgate.scep_http import service_config
    from certgate.settings import load_settings
    from enrollment.scep_service import ScepService
    from pki import profiles
    from pki.hierarchy import Hierarchy

    s = load_settings(config)
    _PKI = Hierarchy(s.pki).load(s.groups)
    groups = _PKI.group_table(s.groups)
    runtime = SimpleNamespace(pki=_PKI, settings=s)
    store = SimpleNamespace(_db=None)  # ScepService wants one; _open/_build never touch it
    for g in s.groups:
        _SERVICES[g.name] = ScepService(service_config(s, g, runtime), _PKI.groups[g.name],  # type: ignore[arg-type]
                                        _PKI.root, groups, store, None)  # type: ignore[arg-type]
    _DEVICE_CERTIFICATE = profiles.device_certificate


def _worker_call(group: str, name: str, args: tuple):  # noqa: ANN202
    return getattr(_SERVICES[group], name)(*args)


def _worker_issue(group: str, public_key, subject, sans, public_url, serial, now, days):  # noqa: ANN001, ANN202
    ca = _PKI.groups[group]  # type: ignore[union-attr]
    return _DEVICE_CERTIFICATE(public_key, subject, sans, group, public_url, ca.certificate,  # type: ignore[misc]
                               ca.key, serial, now, days)


def install_procpool(config: str, nice: int = 0) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from enrollment.scep_service import ScepService
    from pki import profiles

    _register_reducers()
    pool: Executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_init, initargs=(config, nice))
    for f in [pool.submit(sum, ()) for _ in range(2)]:
        f.result()  # start both workers before serving
    orig = ScepService._off_loop

    async def _off_loop(self, fn, *args):  # noqa: ANN001, ANN202
        name = getattr(fn, "__name__", "")
        if name in ("_open", "_build") and getattr(fn, "__self__", None) is self:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _worker_call, self.cfg.group, name, args)
        return await orig(self, fn, *args)

    ScepService._off_loop = _off_loop  # type: ignore[method-assign]

    def device_certificate(public_key, subject, sans, group, public_url, ca_cert, ca_key,  # noqa: ANN001, ANN202
                           serial, now, days):
        # called in the default thread pool by pki/issuance.py: wait for the process
        return pool.submit(_worker_issue, group, public_key, subject, sans, public_url, serial,
                           now, days).result()

    profiles.device_certificate = device_certificate  # type: ignore[assignment]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    variants = set(a.variant.split(","))
    unknown = variants - {"switch1ms", "workers1", "procpool", "procpool_nice", "none"}
    if unknown:
        ap.error(f"unknown variant(s) {sorted(unknown)}")
    if "switch1ms" in variants:
        sys.setswitchinterval(0.001)
    if "workers1" in variants:
        import certgate.scep_http

        certgate.scep_http.EXECUTOR_WORKERS = 1
    if "procpool" in variants or "procpool_nice" in variants:
        install_procpool(a.config, nice=10 if "procpool_nice" in variants else 0)
    from certgate.cli import main as cli_main

    sys.argv = [sys.argv[0], "--config", a.config, "serve"]
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
