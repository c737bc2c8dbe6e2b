"""GET PKIOperation `message` decoding from the raw query string (scep.md pitfall 5)."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from certgate.scep_http import decode_get_message
from enrollment.scep_types import UndecodableRequest

DATA = bytes(range(256)) * 3  # base64 with '+', '/' and '=' padding


def test_forms_clients_send() -> None:
    std = base64.b64encode(DATA).decode()
    assert "+" in std and "/" in std
    forms = [
        std,  # raw '+' and '/' (Apple, Cisco): must not become spaces
        urllib.parse.quote(std, safe=""),  # properly escaped
        base64.urlsafe_b64encode(DATA).decode(),  # URL-safe alphabet
        std.rstrip("="),  # missing padding
        "%0A".join(std[i:i + 64] for i in range(0, len(std), 64)),  # sscep newlines
    ]
    for form in forms:
        assert decode_get_message(f"operation=PKIOperation&message={form}") == DATA, form


@pytest.mark.parametrize("query", ["operation=PKIOperation", "message=***", "message=%FF%FE"])
def test_undecodable(query: str) -> None:
    with pytest.raises(UndecodableRequest):
        decode_get_message(query)
