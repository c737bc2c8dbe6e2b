"""[groups.X.reply] / quarantine_reply and [radius] dictionaries: names resolved at config
load through pyrad's dictionary parser, every problem named by its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from certgate.errors import ConfigError
from certgate.settings import dictionaries as dicts
from certgate.settings import parse_settings
from certgate.settings.dictionaries import Dictionaries, DictionaryError
from pki.hierarchy import reply_attributes
from radius import packet as rp

BASE = """
[[radius.clients]]
name = "wlc"
address = "10.0.0.0/24"
secret = "0123456789"
"""
SYSTEM_DICTIONARY = Path("/usr/share/freeradius/dictionary")


@pytest.fixture(autouse=True)
def no_system_dictionaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """By default the tests see certgate's dictionaries only, installed FreeRADIUS or not."""
    monkeypatch.setattr(dicts, "SYSTEM", tmp_path / "no-freeradius" / "dictionary")


def parse(text: str, tmp_path: Path):
    return parse_settings(tomllib.loads(BASE + text), tmp_path / "c.toml")


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path)
    return err.value.details


def test_reply_attributes_by_name(tmp_path: Path) -> None:
    s = parse("""
[groups.staff]
vlan = 10
[groups.staff.reply]
"Aruba-User-Role" = "staff"
"Cisco-AVPair" = ["url-redirect-acl=guest", "ip:inacl#1=permit ip any any"]
"Airespace-QOS-Level" = "Gold"
"Tunnel-Assignment-Id:2" = "pool"
[groups.staff.quarantine_reply]
"Aruba-User-Role" = "quarantine"
""", tmp_path)
    g = s.group("staff")
    assert [a.name for a in g.reply] == ["Aruba-User-Role", "Cisco-AVPair", "Cisco-AVPair",
                                         "Airespace-QOS-Level", "Tunnel-Assignment-Id:2"]
    role = g.reply[0]
    assert role.type == rp.Attr.VENDOR_SPECIFIC
    assert role.value == (14823).to_bytes(4, "big") + bytes((1, 7)) + b"staff"
    assert [a.text for a in g.reply[1:3]] == ["url-redirect-acl=guest",
                                              "ip:inacl#1=permit ip any any"]
    assert g.reply[3].value.endswith((1).to_bytes(4, "big"))
    assert g.reply[4].value == b"\x02pool"
    assert [a.text for a in g.quarantine_reply] == ["quarantine"]
    # what RADIUS holds for the group
    reply = reply_attributes(g)
    assert reply.extra == g.reply and reply.quarantine_extra == g.quarantine_reply


def test_no_reply_table_reads_no_dictionary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("dictionaries read without a [reply] table")

    monkeypatch.setattr("certgate.settings.reply.Dictionaries", boom)
    s = parse("[groups.staff]\nvlan = 10\n", tmp_path)
    assert s.group("staff").reply == ()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('"Aruba-User-Rol" = "x"', "groups.staff.reply.Aruba-User-Rol: unknown attribute "
                                   "'Aruba-User-Rol'"),
        ('"Aruba-User-Rol" = "x"', "did you mean Aruba-User-Role"),
        ('"No-Such-Thing" = "x"', "add a dictionary file defining it to [radius] dictionaries"),
        ('"Aruba-User-Vlan" = "thirty"', "groups.staff.reply.Aruba-User-Vlan: Aruba-User-Vlan is "
                                         "an integer attribute; expected an integer"),
        ('"Aruba-User-Vlan" = 4294967296', "out of range for Aruba-User-Vlan (integer: "
                                           "0..4294967295)"),
        ('"Mikrotik-Host-IP" = "10.0.0.300"', "groups.staff.reply.Mikrotik-Host-IP: "
                                              "Mikrotik-Host-IP is an IPv4 address attribute"),
        ('"Aruba-Port-Auth-Mode" = "Bogus"', "one of its names (Client-Mode, Infrastructure-Mode, "
                                             "Multi-Domain-Mode)"),
        ('"Aruba-User-Role" = "' + "r" * 300 + '"', "300 octets is too long"),
        ('"Aruba-MPSK-Passphrase" = "secret"', "is encrypted (encrypt=2 in the dictionary)"),
        ('"MS-MPPE-Send-Key" = "0x00"', "certgate sets the MS-MPPE keys"),
        ('"EAP-Message" = "0x03"', "certgate sets EAP-Message"),
        ('"Message-Authenticator" = "0x00"', "certgate sets Message-Authenticator"),
        ('"State" = "0x00"', "certgate sets State"),
        ('"Tunnel-Private-Group-Id" = "30"', "is already set by the group's `vlan`"),
        ('"Cisco-AVPair" = [{a = 1}]', "expected a string, an integer or a list of them"),
        ('"Aruba-User-Role:1" = "x"', "Aruba-User-Role is not a tagged attribute"),
    ],
)
def test_check_config_names_the_problem(tmp_path: Path, reply: str, expected: str) -> None:
    details = problems(f"[groups.staff]\nvlan = 10\n[groups.staff.reply]\n{reply}\n", tmp_path)
    assert any(expected in d for d in details), details


def test_reply_must_be_a_table_and_all_problems_come_at_once(tmp_path: Path) -> None:
    details = problems("""
[groups.staff]
reply = "Aruba-User-Role=staff"
[groups.guests.reply]
"Aruba-User-Vlan" = "x"
"Nope" = 1
[groups.guests.quarantine_reply]
"State" = "0x00"
""", tmp_path)
    assert any(d.startswith("groups.staff.reply: expected a table of attribute names") for d in details)
    assert any(d.startswith("groups.guests.reply.Aruba-User-Vlan:") for d in details)
    assert any(d.startswith("groups.guests.reply.Nope: unknown attribute") for d in details)
    assert any(d.startswith("groups.guests.quarantine_reply.State:") for d in details)


def test_the_reply_must_fit_in_an_access_accept(tmp_path: Path) -> None:
    values = ", ".join(f'"{"a" * 200}{i}"' for i in range(11))
    details = problems(f"[groups.staff.reply]\n\"Cisco-AVPair\" = [{values}]\n", tmp_path)
    assert any("octets encoded; at most 2048" in d for d in details), details


def test_operator_dictionaries_extend_and_override(tmp_path: Path) -> None:
    (tmp_path / "dictionary.site").write_text("""\
VENDOR		Ubiquiti			41112
BEGIN-VENDOR	Ubiquiti
ATTRIBUTE	Ubiquiti-Site-Role		1	string
END-VENDOR	Ubiquiti
ATTRIBUTE	Aruba-User-Role			230	string
""")
    s = parse("""
[radius]
dictionaries = ["dictionary.site"]
[groups.staff.reply]
"Ubiquiti-Site-Role" = "lab"
"Aruba-User-Role" = "x"
""", tmp_path)
    site, overridden = s.group("staff").reply
    assert site.value[:4] == (41112).to_bytes(4, "big")
    assert overridden.type == 230  # the operator's definition won
    assert s.radius.dictionaries == (tmp_path / "dictionary.site",)


def test_bad_operator_dictionaries_are_config_errors(tmp_path: Path) -> None:
    details = problems('[radius]\ndictionaries = ["missing.dict"]\n[groups.staff]\n', tmp_path)
    assert any(d.startswith("radius.dictionaries[0]: ") and "is not a file" in d
               for d in details), details
    (tmp_path / "broken").write_text("ATTRIBUTE Foo 1 nosuchtype\n")
    details = problems('[radius]\ndictionaries = ["broken"]\n[groups.staff]\n', tmp_path)
    assert any(d.startswith("radius.dictionaries: ") and "Illegal type" in d
               for d in details), details


def test_names_ignore_case(tmp_path: Path) -> None:
    s = parse('[groups.staff.reply]\n"aruba-user-role" = "staff"\n', tmp_path)
    assert s.group("staff").reply[0].name == "Aruba-User-Role"


@pytest.mark.skipif(not SYSTEM_DICTIONARY.is_file(), reason="FreeRADIUS dictionaries not installed")
def test_the_system_freeradius_dictionaries_fill_in(tmp_path: Path) -> None:
    d = Dictionaries(system=SYSTEM_DICTIONARY)
    ubnt = d.lookup("Aruba-AirGroup-Version")  # not in certgate's Aruba selection
    assert (ubnt.vendor, ubnt.code, ubnt.values["AirGroup-v2"]) == (14823, 38, 2)
    meraki = d.lookup("Meraki-Device-Name")
    assert meraki.vendor == 29671
    # pyrad cannot parse every FreeRADIUS file (dictionary.juniper's "String" type): the
    # others are read anyway, and certgate's own Juniper selection answers.
    assert d.lookup("Juniper-Switching-Filter").vendor == 2636
    with pytest.raises(KeyError, match="/usr/share/freeradius"):
        d.lookup("Certainly-Not-An-Attribute")
    with pytest.raises(KeyError) as err:
        d.lookup("Aruba-User-Rol")  # in both certgate's and FreeRADIUS's files: named once
    assert str(err.value.args[0]).count("Aruba-User-Role") == 1, err.value


def test_dictionary_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "d"
    bad.write_text("BEGIN-VENDOR Nobody\n")
    with pytest.raises(DictionaryError, match=str(bad)):
        Dictionaries([bad], system=None)


@pytest.mark.parametrize("quarantine", [
    "quarantine_vlan = 999\n", "quarantine_filter_id = 'q'\n",
    "[groups.staff.quarantine_reply]\n'Aruba-User-Role' = 'quarantine'\n",
])
def test_quarantine_without_any_coa_port_is_a_warning(tmp_path, quarantine: str) -> None:
    text = ("[[radius.clients]]\nname = 'wlc'\naddress = '10.0.0.0/24'\nsecret = '0123456789'\n"
            "[groups.staff]\nvlan = 10\n" + quarantine)
    s = parse_settings(tomllib.loads(text), tmp_path / "c.toml")
    (warning,) = s.warnings
    assert warning.startswith("groups.staff: has a quarantine but no [[radius.clients]] sets "
                              "coa_port") and "set coa_port" in warning
    with_coa = text.replace("secret = '0123456789'\n", "secret = '0123456789'\ncoa_port = 3799\n")
    assert parse_settings(tomllib.loads(with_coa), tmp_path / "c.toml").warnings == ()
