"""Worker log lines ([server] workers > 1) say which worker wrote them; others are unchanged."""

from __future__ import annotations

import json
import logging

from certgate.logs import JsonFormatter, TextFormatter


def _record() -> logging.LogRecord:
    return logging.LogRecord("certgate", logging.INFO, __file__, 1, "eap result=%s ms=%.1f",
                             ("accept", 3.25), None)


def test_text_lines_carry_the_worker_index_only_in_worker_mode() -> None:
    assert " certgate worker=1: eap result=accept ms=3.2" in TextFormatter(1).format(_record())
    assert " certgate: eap result=accept ms=3.2" in TextFormatter().format(_record())


def test_json_lines_have_a_worker_key_after_logger_only_in_worker_mode() -> None:
    doc = json.loads(JsonFormatter(0).format(_record()))
    assert list(doc)[:5] == ["timestamp", "level", "logger", "worker", "msg"]
    assert doc["worker"] == 0 and doc["result"] == "accept" and doc["ms"] == 3.2
    assert "worker" not in json.loads(JsonFormatter().format(_record()))
