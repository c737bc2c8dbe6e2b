"""ScepService with its crypto in worker processes (enrollment.scep_crypto.ProcessCrypto):
the workers load the keys themselves; a dead worker costs one request, not the server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enrollment.scep_crypto import CryptoUnavailable, ProcessCrypto
from enrollment.scep_service import ScepService
from enrollment.scep_types import FailInfo, PKIStatus
from pki.groups import Group, GroupTable
from store import Store, open_store
from tests import scep_worker_loader as loader

from .conftest import NOW, Harness, _root, client_key, group_ca, make_csr


@pytest.fixture
async def process_harness(tmp_path: Path):
    made: list[tuple[Store, ProcessCrypto]] = []

    async def make(crash_on_sign: bool = False) -> tuple[Harness, ProcessCrypto]:
        ca = group_ca("staff")
        loader.write_pki(tmp_path, ca)
        crypto = ProcessCrypto(1, loader.load, (str(tmp_path), crash_on_sign), nice=0)
        store = await open_store(tmp_path / f"s{len(made)}.sqlite")
        made.append((store, crypto))
        service = ScepService(loader.config("staff"), ca, _root()[0],
                              GroupTable([Group("staff", ca.certificate)]), store, None,  # type: ignore[arg-type]
                              crypto=crypto, clock=lambda: NOW)
        return Harness(service, store, ca), crypto

    yield make
    for store, crypto in made:
        await crypto.close()
        await store.close()


async def enroll(h: Harness, cn: str):  # noqa: ANN201
    key = client_key(2)
    token = await h.challenge(subject_cn=cn)
    rep, _ = await h.enroll(make_csr(key, cn, token), key)
    return rep


async def test_enrollment_in_a_worker_process(process_harness) -> None:
    h, crypto = await process_harness()
    rep = await enroll(h, "dev-proc")
    assert rep.status is PKIStatus.SUCCESS
    cert = rep.certificates[0]
    assert cert.issuer == h.ca.certificate.subject
    record = await h.store.get(cert.serial_number)
    assert record is not None and record.source == "scep" and record.subject == "CN=dev-proc"
    assert crypto.restarts == 0


async def test_dead_worker_before_opening_is_a_503_then_the_pool_is_back(process_harness) -> None:
    h, crypto = await process_harness()
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool
        crypto.pool.submit(os._exit, 3).result(timeout=30)
    key = client_key(2)
    token = await h.challenge(subject_cn="dev-crash")
    csr = make_csr(key, "dev-crash", token)
    with pytest.raises(CryptoUnavailable):  # HTTP 503 in ScepHttp
        await h.enroll(csr, key)
    assert crypto.restarts == 1
    rep, _ = await h.enroll(csr, key)  # same challenge: nothing was consumed
    assert rep.status is PKIStatus.SUCCESS


async def test_worker_dying_while_signing_answers_a_signed_failure(process_harness) -> None:
    h, crypto = await process_harness(crash_on_sign=True)
    rep = await enroll(h, "dev-sign")
    assert rep.status is PKIStatus.FAILURE and rep.fail_info is FailInfo.badRequest
    assert crypto.restarts == 1
    assert await h.store.find(group="staff") == []


def test_workers_setting(tmp_path: Path) -> None:
    from certgate.errors import ConfigError
    from certgate.scep_http import crypto_workers
    from certgate.settings import load_settings
    from tests.support import write_config

    assert load_settings(write_config(tmp_path / "a")).scep.workers == 2
    assert load_settings(write_config(tmp_path / "b", "[scep]\nworkers = 0\n")).scep.workers == 0
    with pytest.raises(ConfigError, match="workers"):
        load_settings(write_config(tmp_path / "c", "[scep]\nworkers = -1\n"))
    cpus = os.cpu_count() or 1
    assert crypto_workers(64) == cpus and crypto_workers(0) == 0
    # [server] workers = N: each serving process gets its share of the CPUs, at least 1
    assert crypto_workers(64, cpus) == 1 and crypto_workers(0, cpus) == 0
    assert crypto_workers(64, 2 * cpus) == 1
    assert crypto_workers(2, 1) == min(2, cpus)


async def test_hung_worker_is_killed_and_replaced(process_harness, monkeypatch) -> None:
    import signal

    from enrollment import scep_crypto

    h, crypto = await process_harness()
    monkeypatch.setattr(scep_crypto, "CALL_TIMEOUT", 1.0)
    stopped = crypto.slots[0].process.pid
    os.kill(stopped, signal.SIGSTOP)  # alive but never answers
    key = client_key(2)
    token = await h.challenge(subject_cn="dev-hung")
    csr = make_csr(key, "dev-hung", token)
    with pytest.raises(CryptoUnavailable, match="hung"):
        await h.enroll(csr, key)
    monkeypatch.setattr(scep_crypto, "CALL_TIMEOUT", 60.0)  # a new worker takes ~1 s to start
    rep, _ = await h.enroll(csr, key)  # a fresh worker; the challenge was not consumed
    assert rep.status is PKIStatus.SUCCESS
    assert crypto.slots[0].process.pid != stopped and crypto.restarts == 1


def test_worker_whose_parent_died_mid_call_exits_quietly(tmp_path: Path, capfd) -> None:
    """The server killed -9 while a worker computes: the reply meets a closed socket. The
    worker exits 0 without a BrokenPipeError traceback (its stderr is the server's log)."""
    import multiprocessing
    import pickle
    import socket
    from multiprocessing.connection import Connection

    from enrollment.scep_crypto import _worker_main

    loader.write_pki(tmp_path, group_ca("staff"))
    ctx = multiprocessing.get_context("spawn")
    parent, child = socket.socketpair()
    control, child_control = ctx.Pipe(duplex=True)
    child_calls = Connection(child.detach())
    proc = ctx.Process(target=_worker_main, daemon=True,
                       args=(child_calls, child_control, loader.load, (str(tmp_path),), 0))
    proc.start()
    child_calls.close()
    child_control.close()
    calls = Connection(parent.detach())
    calls.send_bytes(pickle.dumps(("staff", "no_such_method", (), {})))
    calls.close()  # gone before the answer (the worker is still loading its keys)
    proc.join(30)
    control.close()
    assert proc.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
