"""FileSink: JSON lines 0600 under a 0700 directory, reopen after logrotate's rename,
a full queue dropped and counted without blocking, flush at close; the emitter fan-out."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from certgate.audit.emitter import EVENTS, Audit, counter_for
from certgate.audit.file_sink import FileSink


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _count(sink: str, result: str) -> float:
    return EVENTS.labels(sink=sink, result=result)._value.get()  # noqa: SLF001


async def test_writes_json_lines_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "audit.json"
    sink = FileSink(path, on_result=counter_for("t-write"))
    await sink.start()
    for i in range(3):
        sink.emit({"n": i, "event": {"action": "x"}})
    await sink.aclose()
    assert [e["n"] for e in _lines(path)] == [0, 1, 2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert _count("t-write", "written") == 3


async def test_an_existing_world_readable_file_becomes_0600(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text('{"old":1}\n')
    path.chmod(0o644)
    sink = FileSink(path)
    await sink.start()
    sink.emit({"new": 1})
    await sink.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _lines(path) == [{"old": 1}, {"new": 1}]  # appended, never truncated


async def test_reopen_after_rename_writes_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    sink = FileSink(path)
    await sink.start()
    sink.emit({"n": 1})
    await _until(lambda: path.exists() and path.stat().st_size > 0)
    path.rename(tmp_path / "audit.json.1")  # logrotate
    sink.emit({"n": 2})  # before the HUP: still the renamed file (the fd follows it)
    await _until(lambda: (tmp_path / "audit.json.1").stat().st_size > len('{"n":1}\n'))
    sink.reopen()
    sink.emit({"n": 3})
    await sink.aclose()
    assert _lines(tmp_path / "audit.json.1") == [{"n": 1}, {"n": 2}]
    assert _lines(path) == [{"n": 3}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    sink = FileSink(path, queue_size=100, on_result=counter_for("t-drop"))
    # not started: nothing drains, as with a writer stuck on a slow disk
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(250):
        sink.emit({"n": i})
    assert loop.time() - started < 0.5
    assert _count("t-drop", "dropped") == 150
    await sink.start()
    await sink.aclose()
    assert [e["n"] for e in _lines(path)] == list(range(100))  # the oldest kept, in order
    assert _count("t-drop", "written") == 100


async def test_write_errors_are_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    sink = FileSink(path, on_result=counter_for("t-error"))
    sink.emit({"n": 1})
    path.mkdir()  # the path is now a directory: open fails in the writer
    sink.drain()
    assert _count("t-error", "error") == 1


class _Raising:
    def emit(self, event) -> None:  # noqa: ANN001
        raise RuntimeError("buggy sink")

    def reopen(self) -> None:
        raise RuntimeError("buggy sink")

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_emitter_fans_out_and_survives_a_raising_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    good = FileSink(path)
    audit = Audit([_Raising(), good])
    assert audit.enabled and not Audit().enabled
    await audit.start()
    audit.emit_all([{"n": 1}, {"n": 2}])
    audit.reopen()
    await audit.aclose()
    assert _lines(path) == [{"n": 1}, {"n": 2}]


async def _until(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
