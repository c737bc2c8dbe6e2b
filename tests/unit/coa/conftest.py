"""A minimal pyrad dictionary and pyrad-based helpers, independent of radius/coa.py."""

from __future__ import annotations

import pytest
from pyrad.dictionary import Dictionary

DICTIONARY = """\
ATTRIBUTE	User-Name		1	string
ATTRIBUTE	NAS-IP-Address		4	ipaddr
ATTRIBUTE	Filter-Id		11	string
ATTRIBUTE	Calling-Station-Id	31	string
ATTRIBUTE	NAS-Identifier		32	string
ATTRIBUTE	Acct-Session-Id		44	string
ATTRIBUTE	Event-Timestamp		55	date
ATTRIBUTE	Tunnel-Type		64	integer	has_tag
ATTRIBUTE	Tunnel-Medium-Type	65	integer	has_tag
ATTRIBUTE	Message-Authenticator	80	octets
ATTRIBUTE	Tunnel-Private-Group-Id	81	string	has_tag
ATTRIBUTE	NAS-IPv6-Address	95	ipv6addr
ATTRIBUTE	Error-Cause		101	integer
"""


@pytest.fixture(scope="session")
def rad_dict(tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    path = tmp_path_factory.mktemp("dict") / "dictionary"
    path.write_text(DICTIONARY)
    return Dictionary(str(path))
