"""The HTTP listener under idle and slowloris connections (issue #10 §3): health, SCEP and
the CRL keep answering within 1 s, idle connections are closed at [http] idle_timeout, a
trickled body is cut at request_timeout."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ServerProcess, certgate, write_config

pytestmark = pytest.mark.integration

IDLE, SLOW = 1000, 200


def _start(tmp_path: Path, idle_timeout: int) -> ServerProcess:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    config = write_config(tmp_path / "cg")
    text = config.read_text().replace(
        "[http]\n", f"[http]\nidle_timeout = {idle_timeout}\nrequest_timeout = 3\n"
        "max_connections = 1024\nmax_connections_per_client = 512\n", 1)
    config.write_text(text)
    certgate("init", config=config)
    return ServerProcess(config, tmp_path / "serve.log").start()


@pytest.fixture
def guarded(tmp_path: Path):
    proc = _start(tmp_path, idle_timeout=3)
    yield proc
    proc.stop()


@pytest.fixture
def patient(tmp_path: Path):
    """Idle connections are not closed by time during the test: only the share evicts."""
    proc = _start(tmp_path, idle_timeout=120)
    yield proc
    proc.stop()


def _timed_get(server: ServerProcess, path: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(server.http + path, timeout=5) as r:
        assert r.status == 200, path
        r.read()
    return time.monotonic() - started


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b"" or True  # EOF, or the 408/400 the server sent before closing
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_and_slowloris_do_not_stop_the_service(guarded: ServerProcess) -> None:
    port = int(guarded.http.rsplit(":", 1)[1])
    idle = [_connect(port) for _ in range(IDLE)]
    slow = [_connect(port) for _ in range(SLOW)]
    try:
        for s in slow:  # headers that never end
            s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        worst = 0.0
        for _ in range(3):
            for path in ("/healthz", "/crl/staff.crl", "/scep/staff?operation=GetCACaps"):
                worst = max(worst, _timed_get(guarded, path))
            for s in slow:
                with contextlib.suppress(OSError):  # already closed by the server
                    s.send(b"X-a: b\r\n")
            time.sleep(0.2)
        print(f"\nworst answer time with {IDLE} idle + {SLOW} slowloris connections: "
              f"{worst * 1000:.0f} ms")
        assert worst < 1.0
        deadline = time.monotonic() + 3 + 5  # idle_timeout + scheduling slack
        open_ = idle + slow
        while open_ and time.monotonic() < deadline:
            time.sleep(0.25)
            open_ = [s for s in open_ if not _closed_by_peer(s)]
        assert not open_, f"{len(open_)} connections still open after idle_timeout"
    finally:
        for s in idle + slow:
            s.close()
    assert "Traceback" not in guarded.log()


def test_a_trickled_body_is_cut_at_request_timeout(guarded: ServerProcess) -> None:
    port = int(guarded.http.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.send(b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
               b"Content-Type: application/ocsp-request\r\n\r\n0")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 8:
            try:
                s.send(b"0")
            except OSError:
                break
            s.settimeout(0.5)
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - started < 6
    finally:
        s.close()


def test_one_client_cannot_take_every_connection(patient: ServerProcess) -> None:
    """Over its share (512 here), a client's own oldest idle connections make room."""
    guarded = patient
    port = int(guarded.http.rsplit(":", 1)[1])
    hoard = [_connect(port) for _ in range(700)]
    try:
        deadline = time.monotonic() + 30
        while True:  # until the server has accepted every one of them
            assert _timed_get(guarded, "/healthz") < 1.0
            held, evicted = _metric(guarded, "certgate_http_connections"), _metric(
                guarded, 'certgate_http_connections_shed_total{reason="evicted_idle"}')
            if held + evicted >= 700 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert held <= 512 + 2 and evicted >= 700 - 512, (held, evicted)
    finally:
        for s in hoard:
            s.close()


def test_over_budget_a_newcomer_gets_503_with_retry_after(tmp_path: Path) -> None:
    """Every held connection busy (a body still arriving): a newcomer is not reset but
    answered 503 + Retry-After and closed (refused_busy); once the refusal pool (8 here) is
    also taken, the next is closed unanswered (closed_busy); when the busy ones end, service
    resumes."""
    config = write_config(tmp_path / "cg")
    config.write_text(config.read_text().replace(
        "[http]\n", "[http]\nidle_timeout = 20\nrequest_timeout = 20\nmax_connections = 16\n"
        "max_connections_per_client = 16\n", 1))
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log").start()
    port = int(server.http.rsplit(":", 1)[1])
    busy, pool = [], []
    try:
        for _ in range(16):  # a POST whose body never completes: busy, not evictable
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                      b"Content-Type: application/ocsp-request\r\n\r\n0")
            busy.append(s)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /scep/staff?operation=GetCACaps HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        head = answer.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 503"), answer[:300]
        assert "Retry-After: 5" in head and "Connection: close" in head
        for _ in range(8):  # refused connections that never send a request: the pool fills
            pool.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                closed = s.recv(4096) == b""
            except ConnectionResetError:
                closed = True
        assert closed, "a newcomer beyond the refusal pool is closed unanswered"
        for s in busy + pool:
            s.close()
        busy, pool = [], []
        deadline = time.monotonic() + 10
        while True:
            try:
                if _timed_get(server, "/healthz") < 1.0:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "service did not resume"
            time.sleep(0.2)
        assert _metric(server, 'certgate_http_connections_shed_total{reason="refused_busy"}') >= 9
        assert _metric(server, 'certgate_http_connections_shed_total{reason="closed_busy"}') >= 1
        assert "refused (503, Retry-After 5)" in server.log()
        assert "Traceback" not in server.log()
    finally:
        for s in busy + pool:
            s.close()
        server.stop()


def _metric(server: ServerProcess, name: str) -> float:
    text = urllib.request.urlopen(server.http + "/metrics", timeout=5).read().decode()
    rows = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(rows[0].rsplit(" ", 1)[1]) if rows else 0.0


def test_out_of_file_descriptors_the_probes_still_answer(tmp_path: Path) -> None:
    """With a low open-file limit and the HTTP port flooded with idle connections, accept()
    fails with EMFILE: one log line (not a traceback per second), idle connections are closed
    to free descriptors, and /healthz and the CRL answer again."""
    config = write_config(tmp_path / "cg")
    certgate("init", config=config)
    server = ServerProcess(config, tmp_path / "serve.log")
    server.nofile = 256
    server.start()
    port = int(server.http.rsplit(":", 1)[1])
    flood: list[socket.socket] = []
    try:
        for _ in range(600):  # more than the server can hold: the kernel queues the rest
            flood.append(_connect(port))
        time.sleep(1.5)
        answered = False
        deadline = time.monotonic() + 10
        while not answered and time.monotonic() < deadline:
            try:
                answered = _timed_get(server, "/healthz") < 2.0 and \
                    _timed_get(server, "/crl/staff.crl") < 2.0
            except OSError:
                time.sleep(0.3)
        assert answered, server.log()[-3000:]
    finally:
        for s in flood:
            s.close()
        server.stop()
    log = server.log()
    assert "accept failed" in log and "Too many open files" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Encoding: gzip\r\n\r\nabcde",
    b"POST /scep/staff?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Encoding: deflate\r\n\r\nabcde",
    b"POST /api/v1/webhooks/device-removed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"\r\nzz\r\n",
])
def test_malformed_requests_get_a_400_and_no_traceback(guarded: ServerProcess, raw: bytes) -> None:
    port = int(guarded.http.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        status = s.recv(200).split(b"\r\n")[0]
    assert status.split()[1:2] == [b"400"], status  # was a 500 for the mis-encoded bodies
    time.sleep(0.2)
    log = guarded.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
