"""The CPU-heavy half of a PKIOperation, and where it runs.

`GroupCrypto` holds one group's signer (CA or RA) and CA keys and does the crypto of a
PKIOperation: open (parse + verify + decrypt the pkiMessage, parse the inner request,
CSR facts, renewal classification, issuer check), sign a device certificate (and make
its inventory record), build + sign the CertRep. Its inputs and outputs are DER bytes
and plain frozen dataclasses (`Opened`, `EnrollRequest`, `Outcome`, `CertRecord`, ...),
never cryptography objects, so it can run in another process.

Runners (`CryptoRunner.call(group, method, *args)`):
  `ThreadCrypto`   in a thread pool of this process (`[scep] workers = 0`, unit tests);
  `ProcessCrypto`  in a few spawned worker processes that build their own `GroupCrypto`s
                   (a loader loads the PKI from the settings file: private keys never
                   cross the pipe) and run at a lower priority (os.nice), so SCEP crypto
                   neither takes the event loop's GIL nor, on a busy machine, its CPU.
                   The event loop talks to each worker over a socket pair itself (no
                   executor threads). A crashed worker fails its in-flight calls with
                   `CryptoUnavailable` and is respawned by the next call.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment import scep_codec as codec
from enrollment.policy import CsrReason, CsrRejected, EnrollmentRejected, extract_csr_facts
from enrollment.renewal import Renewal, RenewalReason, RenewalRejected, classify
from enrollment.scep_enroll import EnrollRequest, Outcome, RenewalSigner, ServiceConfig, success
from enrollment.scep_types import (
    REQUEST_TYPES,
    AlgorithmRefused,
    FailInfo,
    MessageType,
    ScepError,
    UndecodableRequest,
)
from pki.groups import GroupTable
from pki.hierarchy import GroupCa
from pki.issuance import sign_device
from store.records import CertRecord, Issued

log = logging.getLogger("certgate.scep")

DEFAULT_NICE = 10


CALL_TIMEOUT = 30.0  # seconds; one call is milliseconds, so this only catches a hung worker


class CryptoUnavailable(Exception):
    """The crypto worker died during the call (the pool has been recreated)."""


# --- what crosses the process boundary ---------------------------------------------------


@dataclass(frozen=True)
class ReplyTo:
    """What a CertRep needs from the request it answers."""

    message_type: MessageType
    transaction_id: str
    transaction_id_string_type: str
    sender_nonce: bytes
    signer_der: bytes
    signer_subject: str
    digest_algorithm: codec.DigestAlgorithm | None
    envelope_algorithms: codec.EnvelopeAlgorithms | None

    @classmethod
    def of(cls, msg: codec.PkiMessage) -> ReplyTo:
        return cls(msg.message_type, msg.transaction_id, msg.transaction_id_string_type,
                   msg.sender_nonce, msg.signer_certificate.public_bytes(Encoding.DER),
                   msg.signer_certificate.subject.rfc4514_string(), msg.digest_algorithm,
                   msg.envelope_algorithms)

    def message(self) -> codec.PkiMessage:
        """A PkiMessage with what the CertRep builders read (signer, nonce, ids, algorithms)."""
        return codec.PkiMessage(
            message_type=self.message_type, transaction_id=self.transaction_id,
            transaction_id_string_type=self.transaction_id_string_type,
            sender_nonce=self.sender_nonce,
            signer_certificate=x509.load_der_x509_certificate(self.signer_der), certificates=(),
            digest_algorithm=self.digest_algorithm, digest_algorithm_oid="",
            signature_algorithm="", signature_digest=None, signing_time=None,
            enveloped_content=None, envelope_algorithms=self.envelope_algorithms)


@dataclass(frozen=True)
class Refusal:
    """An EnrollmentRejected found off the loop, as data (exceptions do not pickle)."""

    kind: str  # "csr" | "renewal"
    reason: str
    detail: str

    @classmethod
    def of(cls, exc: CsrRejected | RenewalRejected) -> Refusal:
        return cls("renewal" if isinstance(exc, RenewalRejected) else "csr", exc.reason.value,
                   exc.detail)

    def exception(self) -> EnrollmentRejected:
        if self.kind == "renewal":
            return RenewalRejected(RenewalReason(self.reason), self.detail)
        return CsrRejected(CsrReason(self.reason), self.detail)


@dataclass(frozen=True)
class Opened:
    """A pkiMessage opened off the loop.

    `failure` set: the request was refused before any decision (bad signature, time,
    algorithm, inner request...): `failure_body` is the signed FAILURE to send.
    """

    reply_to: ReplyTo
    algorithms: codec.EnvelopeAlgorithms | None = None
    failure: tuple[str, str] | None = None  # (FailInfo name, reason)
    failure_body: bytes | None = None
    refused_algorithm: str | None = None  # badAlg: the algorithm's config name or "other"
    enroll: EnrollRequest | None = None
    refusal: Refusal | None = None  # CSR format, renewal signer
    issuer_error: str | None = None  # CertPoll / GetCert / GetCRL for another CA
    poll_subject: str | None = None  # CertPoll
    serial: int | None = None  # GetCert / GetCRL


@dataclass(frozen=True)
class Undecodable:
    reason: str


@dataclass(frozen=True)
class Built:
    body: bytes
    outcome: Outcome  # a FAILURE instead when the reply could not be enveloped


# --- the crypto ------------------------------------------------------------------------


class GroupCrypto:
    """One group's SCEP crypto. Pure (no I/O, no clock): the caller passes `now`."""

    def __init__(self, cfg: ServiceConfig, ca: GroupCa, groups: GroupTable) -> None:
        self.cfg = cfg
        self.ca = ca
        self.groups = groups
        if cfg.ca_is_ra:
            self.signer_cert, self.signer_key = ca.certificate, ca.key
            self.reply_chain: tuple[x509.Certificate, ...] = ()
        else:
            self.signer_cert, self.signer_key = ca.ra_certificate, ca.ra_key
            self.reply_chain = (ca.certificate,)

    def open(self, body: bytes, now: dt.datetime) -> Opened | Undecodable:
        try:
            return self._open(body, now)
        except UndecodableRequest as exc:
            return Undecodable(exc.reason)
        except ScepError as exc:
            if not isinstance(exc.request, codec.PkiMessage):
                return Undecodable(exc.reason)
            reply_to = ReplyTo.of(exc.request)
            failure = Outcome("failure", fail_info=exc.fail_info.name,
                              reason=exc.fail_info.name, detail=exc.reason)
            algorithm = None
            if exc.fail_info is FailInfo.badAlg:
                algorithm = exc.algorithm if isinstance(exc, AlgorithmRefused) else "other"
            return Opened(reply_to, failure=(exc.fail_info.name, exc.reason),
                          failure_body=self.build(reply_to, None, failure, now).body,
                          refused_algorithm=algorithm)

    def _open(self, body: bytes, now: dt.datetime) -> Opened:
        msg = codec.parse_pki_message(body)
        if msg.message_type not in REQUEST_TYPES:
            raise ScepError(FailInfo.badRequest, f"{msg.message_type.name} is not a request",
                            request=msg)
        if not isinstance(msg.signer_certificate.public_key(), rsa.RSAPublicKey):
            # The reply is enveloped to the signer certificate: RSA key transport only.
            raise ScepError(FailInfo.badAlg, "signer certificate key is not RSA", request=msg)
        codec.check_signing_time(msg, now, self.cfg.signing_time_skew)
        policy = self.cfg.algorithms
        codec.check_algorithms(msg, policy=policy)
        decrypted = codec.decrypt_inner(msg, self.signer_cert, self.signer_key)  # type: ignore[arg-type]
        codec.check_algorithms(msg, decrypted.algorithms, policy=policy)
        inner = codec.parse_inner(msg.message_type, decrypted.content, msg, policy=policy)
        opened = Opened(ReplyTo.of(msg), decrypted.algorithms)
        mtype = msg.message_type
        if mtype in (MessageType.CertPoll, MessageType.GetCert, MessageType.GetCRL):
            issuer_error = None
            if inner.issuer != self.ca.certificate.subject:
                issuer_error = f"issuer {inner.issuer.rfc4514_string()} is not this group's CA"
            if mtype is MessageType.CertPoll:
                return _replace(opened, issuer_error=issuer_error,
                                poll_subject=inner.subject.rfc4514_string())
            return _replace(opened, issuer_error=issuer_error, serial=inner.serial_number)
        if mtype not in (MessageType.PKCSReq, MessageType.RenewalReq):
            return opened
        try:
            facts = extract_csr_facts(inner)
            classification = classify(mtype, msg.signer_certificate, self.groups, now)
        except (CsrRejected, RenewalRejected) as exc:
            return _replace(opened, refusal=Refusal.of(exc))
        renewal = None
        if isinstance(classification, Renewal):
            renewal = RenewalSigner(classification.old_cert.public_bytes(Encoding.DER),
                                    classification.group.name)
        return _replace(opened, enroll=EnrollRequest(mtype, msg.transaction_id,
                                                     inner.public_bytes(Encoding.DER), facts,
                                                     renewal))

    def sign_device(self, csr_der: bytes, serial: int, now: dt.datetime, days: int, *,
                    device_id: str | None, source: str, transaction_id: str | None) -> Issued:
        """Sign a device certificate for the CSR's key, subject and SANs; its inventory record."""
        csr = x509.load_der_x509_csr(csr_der)
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        cert = sign_device(csr.public_key(), csr.subject, sans, self.ca, self.cfg.public_url,
                           serial, now, days)
        record = CertRecord.from_certificate(cert, self.ca.name, device_id=device_id,
                                             source=source, issued_at=now,
                                             transaction_id=transaction_id)
        return Issued(cert.public_bytes(Encoding.DER), record)

    def sign_and_build(self, csr_der: bytes, serial: int, now: dt.datetime, days: int,
                       reply_to: ReplyTo, algorithms: codec.EnvelopeAlgorithms | None, *,
                       device_id: str | None, source: str, transaction_id: str | None
                       ) -> tuple[Issued, Built]:
        """`sign_device`, and the CertRep SUCCESS that answers `reply_to` with the certificate
        (one hop for both; the caller uses the reply only if the certificate is recorded)."""
        issued = self.sign_device(csr_der, serial, now, days, device_id=device_id, source=source,
                                  transaction_id=transaction_id)
        return issued, self.build(reply_to, algorithms, success(issued.der), now)

    def build(self, reply_to: ReplyTo, algorithms: codec.EnvelopeAlgorithms | None,
              outcome: Outcome, now: dt.datetime) -> Built:
        msg = reply_to.message()
        try:
            return Built(self._build(msg, algorithms, outcome, now), outcome)
        except ScepError as exc:  # e.g. the reply cannot be enveloped to the signer
            outcome = Outcome("failure", fail_info=exc.fail_info.name, reason=exc.fail_info.name,
                              detail=exc.reason)
            return Built(self._build(msg, None, outcome, now), outcome)

    def _build(self, msg: codec.PkiMessage, algorithms: codec.EnvelopeAlgorithms | None,
               outcome: Outcome, now: dt.datetime) -> bytes:
        # Replies follow the request's algorithms floored at AES-128 / SHA-256 even when the
        # group accepts legacy requests: OpenSSL 3 clients cannot open DES (scep.md pitfall 1).
        opts = codec.ReplyOptions(algorithms=algorithms, legacy=False, ra_chain=self.reply_chain,
                                  now=now)
        key, cert = self.signer_key, self.signer_cert
        if outcome.status == "success" and outcome.crl is not None:
            return codec.build_cert_rep_crl(msg, outcome.crl, cert, key, opts)  # type: ignore[arg-type]
        if outcome.status == "success":
            certs = [x509.load_der_x509_certificate(d) for d in outcome.certificates]
            return codec.build_cert_rep_success(msg, certs, cert, key, opts)  # type: ignore[arg-type]
        if outcome.status == "pending":
            return codec.build_cert_rep_pending(msg, cert, key, opts)  # type: ignore[arg-type]
        text = outcome.reason if outcome.reason != "internal_error" else None
        return codec.build_cert_rep_failure(msg, FailInfo[outcome.fail_info or "badRequest"], cert,
                                            key, text, opts)  # type: ignore[arg-type]


def _replace(opened: Opened, **changes: Any) -> Opened:
    from dataclasses import replace

    return replace(opened, **changes)


# --- runners ---------------------------------------------------------------------------


class CryptoRunner(Protocol):
    async def call(self, group: str, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def close(self) -> None: ...


def _invoke(crypto: Mapping[str, GroupCrypto], group: str, method: str, args: tuple,
            kwargs: dict) -> Any:
    return getattr(crypto[group], method)(*args, **kwargs)


class ThreadCrypto:
    """GroupCrypto in a thread pool of this process."""

    def __init__(self, executor: Executor, crypto: Mapping[str, GroupCrypto]) -> None:
        self.executor = executor
        self.crypto = dict(crypto)

    async def call(self, group: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, _invoke, self.crypto, group, method, args, kwargs)

    async def close(self) -> None:
        return None


# Worker-process state, set by _worker_init.
_WORKER_CRYPTO: dict[str, GroupCrypto] = {}

Loader = Callable[..., Mapping[str, GroupCrypto]]


def _worker_init(loader: Loader, args: tuple, nice: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent shuts the workers down
    if nice:
        os.nice(nice)  # a busy machine runs the event loop (RADIUS) first
    _WORKER_CRYPTO.update(loader(*args))


def _worker_call(group: str, method: str, args: tuple, kwargs: dict) -> Any:
    return _invoke(_WORKER_CRYPTO, group, method, args, kwargs)


def _answer(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """A reply frame: ("ok", fn(*args, **kwargs)) or ("err", exception), pickled."""
    try:
        reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - re-raised in the parent
        reply = ("err", exc)
    try:
        return pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
        return pickle.dumps(("err", RuntimeError(f"unpicklable reply: {exc!r}")))


def _worker_main(calls: Connection, control: Connection, loader: Loader, args: tuple,
                 nice: int) -> None:
    """A worker process: answer `calls` (GroupCrypto calls, in order) and `control`
    (plain functions, `_Control.submit`) until the parent closes `calls`."""
    _worker_init(loader, args, nice)
    channels = [calls, control]
    while True:
        for chan in mp_wait(channels):
            try:
                data = chan.recv_bytes()
            except (EOFError, OSError):
                if chan is calls:
                    return  # the parent closed it (or died): no orphan workers
                channels.remove(chan)
                continue
            if chan is calls:
                reply = _answer(_worker_call, *pickle.loads(data))
            else:
                fn, a, kw = pickle.loads(data)
                reply = _answer(fn, *a, **kw)
            try:
                chan.send_bytes(reply)
            except (BrokenPipeError, ConnectionResetError):  # the parent died mid-call (kill -9)
                if chan is calls:
                    return
                channels.remove(chan)


class _Replies(asyncio.Protocol):
    """The parent's end of a worker's `calls` socket, on the event loop: requests are
    written as multiprocessing.Connection frames, replies come back in order."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 4:
            size = int.from_bytes(buf[:4], "big", signed=True)
            head = 4
            if size == -1:  # Connection's header for frames of 2 GiB and more
                if len(buf) < 12:
                    return
                size, head = int.from_bytes(buf[4:12], "big"), 12
            if len(buf) < head + size:
                return
            frame = bytes(buf[head:head + size])
            del buf[:head + size]
            self.slot.replied(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.lost()


class _Slot:
    """One worker process and the calls it has in flight (answered in order)."""

    def __init__(self, owner: ProcessCrypto) -> None:
        self.owner = owner
        ctx = multiprocessing.get_context("spawn")
        parent, child = socket.socketpair()
        control, child_control = ctx.Pipe(duplex=True)
        child_calls = Connection(child.detach())
        self.process = ctx.Process(target=_worker_main, name="certgate-scep-crypto", daemon=True,
                                   args=(child_calls, child_control, *owner._initargs))
        self.process.start()
        child_calls.close()
        child_control.close()
        self.sock: socket.socket | None = parent
        self.control = control
        self.control_lock = threading.Lock()
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Future | None = None
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.dead = False

    async def connect(self) -> asyncio.Transport:
        if self.transport is not None:
            return self.transport
        if self.connecting is None:
            loop = asyncio.get_running_loop()
            self.connecting = loop.create_future()
            try:
                assert self.sock is not None
                transport, _ = await loop.connect_accepted_socket(lambda: _Replies(self),
                                                                  self.sock)
            except BaseException as exc:
                self.connecting.set_exception(exc)
                self.connecting.exception()  # retrieved: the waiters re-raise it
                self.connecting = None
                raise
            self.transport = transport  # type: ignore[assignment]
            self.connecting.set_result(transport)
            return transport  # type: ignore[return-value]
        return await asyncio.shield(self.connecting)

    def send(self, frame: bytes, fut: asyncio.Future) -> None:
        assert self.transport is not None
        self.pending.append(fut)
        size = len(frame)
        head = size.to_bytes(4, "big") if size <= 0x7FFFFFFF else b"\xff\xff\xff\xff" + \
            size.to_bytes(8, "big")
        self.transport.write(head + frame)

    def replied(self, frame: bytes) -> None:
        fut = self.pending.popleft()
        if not fut.done():
            fut.set_result(frame)

    def lost(self) -> None:
        if self.dead:
            return
        self.dead = True
        transport, self.transport = self.transport, None
        if transport is not None:
            # the transport owns the socket: close it through the transport, never the raw
            # socket (its fd number would be reused while still registered with the loop)
            self.sock = None
            transport.close()
        pending, self.pending = self.pending, collections.deque()
        self.owner._lost(self, len(pending))
        for fut in pending:
            if not fut.done():
                fut.set_exception(CryptoUnavailable("SCEP crypto worker died"))

    def close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()
        elif self.sock is not None:
            self.sock.close()
        self.sock = None
        self.control.close()

    def join(self, timeout: float) -> None:
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class _Control:
    """`submit(fn, *args)`: run a plain (picklable) function in a worker, off the event loop,
    round robin; a concurrent Future. EOF = the worker died: BrokenProcessPool."""

    def __init__(self, owner: ProcessCrypto) -> None:
        self.owner = owner
        self.turn = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        slots = self.owner.slots
        slot = slots[next(self.turn) % len(slots)]
        fut: Future = Future()

        def run() -> None:
            try:
                with slot.control_lock:
                    slot.control.send_bytes(pickle.dumps((fn, args, kwargs)))
                    status, value = pickle.loads(slot.control.recv_bytes())
            except (EOFError, OSError) as exc:
                fut.set_exception(BrokenProcessPool(f"SCEP crypto worker died ({exc!r})"))
                return
            if status == "ok":
                fut.set_result(value)
            else:
                fut.set_exception(value)

        threading.Thread(target=run, name="scep-crypto-control", daemon=True).start()
        return fut


class ProcessCrypto:
    """GroupCrypto in spawned worker processes that load the PKI themselves.

    `loader(*loader_args)` runs in each worker and returns its GroupCryptos (a top-level
    function: it is pickled by name). Each worker has a socket pair to the parent, read and
    written by the event loop itself (no executor threads: a call is one write and one
    read); calls go to the worker with the fewest in flight. A worker that dies fails the
    calls it had in flight with `CryptoUnavailable` and is respawned by the next call.
    `pool.submit(fn, *args)` runs a plain function in a worker (tests, diagnostics).
    """

    def __init__(self, workers: int, loader: Loader, loader_args: tuple = (), *,
                 nice: int = DEFAULT_NICE) -> None:
        self.workers = workers
        self._initargs = (loader, loader_args, nice)
        self._closed = False
        self.restarts = 0
        self.slots = [_Slot(self) for _ in range(workers)]  # started now, not on a request
        self.pool = _Control(self)

    def _lost(self, slot: _Slot, in_flight: int) -> None:
        if self._closed:
            return
        self.restarts += 1
        log.error("SCEP crypto worker process %s died (%d call(s) in flight): respawned on "
                  "the next call (restart %d)", slot.process.pid, in_flight, self.restarts)

    def _pick(self) -> _Slot:
        i = min(range(len(self.slots)), key=lambda k: len(self.slots[k].pending))
        slot = self.slots[i]
        if slot.dead:
            slot.close()
            if slot.process.is_alive():
                slot.process.kill()
            # reap it off the event loop: join() may wait, and RADIUS shares this loop
            threading.Thread(target=slot.join, args=(5,), name="scep-crypto-reap",
                             daemon=True).start()
            slot = self.slots[i] = _Slot(self)
        return slot

    async def call(self, group: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise CryptoUnavailable("SCEP crypto workers are shut down")
        slot = self._pick()
        try:
            await slot.connect()
        except OSError as exc:
            slot.lost()
            raise CryptoUnavailable(f"SCEP crypto worker unreachable ({exc})") from exc
        fut = asyncio.get_running_loop().create_future()
        slot.send(pickle.dumps((group, method, args, kwargs), pickle.HIGHEST_PROTOCOL), fut)
        try:
            # shield: a timeout must not cancel the future the reply stream still expects
            frame = await asyncio.wait_for(asyncio.shield(fut), CALL_TIMEOUT)
        except TimeoutError:
            log.error("SCEP crypto worker %s did not answer %s in %.0f s: killing it",
                      slot.process.pid, method, CALL_TIMEOUT)
            fut.cancel()
            slot.process.kill()
            slot.lost()  # now, not when the socket closes: the next call gets a new worker
            raise CryptoUnavailable(f"SCEP crypto worker hung in {method}") from None
        status, value = pickle.loads(frame)
        if status == "err":
            raise value
        return value

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in self.slots:
            slot.close()  # EOF: each worker finishes its call and exits
        slots = list(self.slots)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [slot.join(10) for slot in slots])
