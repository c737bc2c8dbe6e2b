"""`[audit] file`: JSON lines appended to a file (0600, its directory 0700 when created).

Emitters never wait for the disk: events go into a bounded in-memory queue and a writer
task appends them in batches from a worker thread. A full queue drops the event and
counts it (certgate_audit_events_total{sink="file",result="dropped"}). ``reopen`` (SIGHUP
after logrotate moved the file) makes the writer open the path afresh before its next batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("certgate.audit")

CLOSE_DEADLINE_SECONDS = 2.0
BATCH = 512


class FileSink:
    def __init__(self, path: Path, *, queue_size: int = 10000,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.queue_size = queue_size
        self._queue: collections.deque[Mapping[str, Any]] = collections.deque()
        self._report = on_result or (lambda result: None)
        self._fd: int | None = None
        self._reopen = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing = False

    def __repr__(self) -> str:
        return f"FileSink({str(self.path)!r})"

    # -- the emitter side: never blocks, never raises -----------------------------------

    def emit(self, event: Mapping[str, Any]) -> None:
        if len(self._queue) >= self.queue_size or self._closing:
            self._report("dropped")
            return
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    def reopen(self) -> None:
        self._reopen = True
        if self._wake is not None:
            self._wake.set()

    # -- the writer ------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating the directory 0700 and the file 0600); raises OSError."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    async def start(self) -> None:
        self.open()  # at startup a bad path is the operator's to fix: let it raise
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-file")
        if self._queue:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await loop.run_in_executor(None, self.drain)
            if self._closing and not self._queue:
                return

    def drain(self) -> None:
        """Write everything queued (worker thread; also used by tests directly)."""
        if self._reopen:
            self._reopen = False
            try:
                self.open()
                log.info("audit file %s reopened", self.path)
            except OSError as exc:
                log.error("audit file %s cannot be reopened: %s (writing on to the old file)",
                          self.path, exc.strerror)
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            data = b"".join(
                json.dumps(ev, separators=(",", ":"), default=str).encode() + b"\n"
                for ev in batch)
            try:
                if self._fd is None:
                    self.open()
                assert self._fd is not None
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                for _ in batch:
                    self._report("error")
                if not self._failing:
                    log.error("audit file %s: write failed: %s", self.path, exc.strerror)
                self._failing = True
                continue
            self._failing = False
            for _ in batch:
                self._report("written")

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_DEADLINE_SECONDS)
            except TimeoutError:
                self._task.cancel()
                log.warning("audit file %s: %d event(s) not written at shutdown",
                            self.path, len(self._queue))
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
