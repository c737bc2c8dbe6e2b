"""The blocking UDP shell of test-auth: sends what the Exchange says, feeds it what comes
back, arms its retransmission deadline. Nothing else (the decisions are in exchange.py)."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable

from radius.client.exchange import Exchange, NasOptions, Outcome


def run(exchange: Exchange, host: str, port: int,
        clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Drive ``exchange`` against host:port until it has an outcome."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, port))
        except OSError as exc:
            return _fail(exchange, f"cannot reach {host}:{port}: {exc.strerror or exc}")
        data: bytes | None = exchange.start(clock())
        while not exchange.done:
            if data is not None:
                try:
                    sock.send(data)
                except OSError as exc:
                    return _fail(exchange, f"cannot send to {host}:{port}: {exc.strerror or exc}")
            deadline = exchange.deadline
            if deadline is None:
                break
            sock.settimeout(max(0.0, deadline - clock()))
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                data = exchange.timer(clock())
                continue
            except ConnectionRefusedError:
                # ICMP port unreachable: nothing listens there; the retries still run, so a
                # server that is just starting gets its chance.
                data = None
                exchange.note_unreachable()
                continue
            except OSError as exc:
                return _fail(exchange, f"receive from {host}:{port}: {exc.strerror or exc}")
            data = exchange.receive(reply, clock())
    assert exchange.outcome is not None
    return exchange.outcome


def _fail(exchange: Exchange, detail: str) -> Outcome:
    exchange.outcome = Outcome("error", detail)
    return exchange.outcome


def authenticate(host: str, port: int, secret: bytes, *, ca_file: str | None,
                 cert_file: str | None = None, key_file: str | None = None,
                 identity: bytes = b"anonymous", tls: str | None = None,
                 timeout: float = 5.0, retries: int = 1,
                 calling_station: str | None = None) -> tuple[Outcome, Exchange]:
    """One authentication from files (tests and scripts): the outcome and the exchange.
    `calling_station` is the device's MAC as the NAS reports it (default NasOptions')."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from radius.client.supplicant import Supplicant, client_context

    leaf = key = None
    chain: list[x509.Certificate] = []
    if cert_file and key_file:
        with open(cert_file, "rb") as f:
            leaf, *chain = x509.load_pem_x509_certificates(f.read())
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    trust = None
    if ca_file:
        with open(ca_file, "rb") as f:
            trust = x509.load_pem_x509_certificates(f.read())
    context = client_context(certificate=leaf, private_key=key, chain=chain, trust=trust,  # type: ignore[arg-type]
                             tls_min=tls or "1.2", tls_max=tls or "1.3")
    nas = NasOptions(secret=secret, user_name=identity, timeout=timeout, retries=retries)
    if calling_station is not None:
        nas = dataclasses.replace(nas, calling_station=calling_station)
    exchange = Exchange(Supplicant(context, identity), nas)
    return run(exchange, host, port), exchange
