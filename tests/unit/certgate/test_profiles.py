"""certgate/profiles/linux.py: escaping, TLS version options, the shape of each profile."""

from __future__ import annotations

import configparser

import pytest

from certgate.profiles import linux

P = linux.Profile(server_name="radius.example.test", ca_cert="/etc/certgate/root.crt",
                  client_cert="/d/laptop.chain.pem", private_key="/d/laptop.key",
                  identity="laptop-01")


def _network(text: str) -> dict[str, str]:
    body = text[text.index("network={\n") + len("network={\n"):text.index("\n}")]
    return dict(line.strip().split("=", 1) for line in body.splitlines())


def test_wpa_string_quotes_plain_text_and_hex_encodes_the_rest() -> None:
    assert linux.wpa_string("laptop-01") == '"laptop-01"'
    for value in ('a"b', "back\\slash", "new\nline", "café", ""):
        assert bytes.fromhex(linux.wpa_string(value)).decode() == value


def test_phase1_and_nm_flags_follow_the_tls_range() -> None:
    assert linux.tls_phase1(P) == ("tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 "
                                   "tls_disable_tlsv1_2=0 tls_disable_tlsv1_3=0")
    assert linux.nm_auth_flags(P) == 0x1 | 0x2
    only13 = linux.Profile(**{**P.__dict__, "tls_min": "1.3"})
    assert "tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0" in linux.tls_phase1(only13)
    assert linux.nm_auth_flags(only13) == 0x1 | 0x2 | 0x4
    only12 = linux.Profile(**{**P.__dict__, "tls_max": "1.2"})
    assert linux.nm_auth_flags(only12) == 0x1 | 0x2 | 0x10
    with pytest.raises(ValueError, match="min <= max"):
        linux.tls_phase1(linux.Profile(**{**P.__dict__, "tls_min": "1.3", "tls_max": "1.2"}))


def test_eapol_test_profile_has_the_command_and_pins_the_server() -> None:
    text = linux.eapol_test(P, "127.0.0.1", 1812, "/d/laptop.eapol.conf", "in certgate.toml")
    assert '# eapol_test -c /d/laptop.eapol.conf -a 127.0.0.1 -p 1812 -s "$SECRET"' in text
    net = _network(text)
    assert net["key_mgmt"] == "IEEE8021X" and net["eap"] == "TLS"
    assert net["ca_cert"] == '"/etc/certgate/root.crt"'
    assert net["domain_suffix_match"] == '"radius.example.test"'
    assert net["identity"] == '"laptop-01"' and "private_key_passwd" not in net


def test_comments_cannot_be_broken_out_of() -> None:
    evil = linux.Profile(**{**P.__dict__, "identity": "x\nnetwork={\n}"})
    text = linux.wpa_supplicant(evil, "Corp")
    assert text.splitlines().count("network={") == 1
    assert all(line.startswith(("#", "network={", "\t", "}", "ap_scan")) for line in
               text.splitlines())


def test_wifi_and_wired_wpa_supplicant() -> None:
    wifi = _network(linux.wpa_supplicant(P, 'My "Net"'))
    assert bytes.fromhex(wifi["ssid"]).decode() == 'My "Net"'
    assert wifi["key_mgmt"] == "WPA-EAP WPA-EAP-SHA256" and wifi["ieee80211w"] == "1"
    wired = linux.wpa_supplicant(P, None, "eth1")
    assert "ap_scan=0\n" in wired and "wpa_supplicant -D wired -i eth1" in wired
    assert _network(wired)["eapol_flags"] == "0"
    with pytest.raises(ValueError, match="1-32 bytes"):
        linux.wpa_supplicant(P, "x" * 33)


def test_keyfile_escaping_and_ssid_forms() -> None:
    assert linux.keyfile_string(" lead\\back\nnl") == "\\slead\\\\back\\nnl"
    assert linux.keyfile_ssid("CorpWiFi") == "CorpWiFi"
    assert linux.keyfile_ssid("a;b") == "97;59;98;"
    assert linux.keyfile_ssid(" x") == "32;120;"


def test_networkmanager_keyfile_parses_and_has_the_pins() -> None:
    text = linux.networkmanager(P, "certgate-laptop-01", "0" * 8 + "-0000-4000-8000-" + "0" * 12,
                                "Corp", "wlp2s0", "/d/laptop.nmconnection")
    assert "# sudo nmcli connection load /etc/NetworkManager/system-connections/" \
        "laptop.nmconnection" in text
    kf = configparser.ConfigParser(interpolation=None, strict=True)
    kf.optionxform = str
    kf.read_string(text)
    assert kf["connection"]["interface-name"] == "wlp2s0"
    assert kf["802-1x"]["domain-suffix-match"] == "radius.example.test"
    assert kf["802-1x"]["private-key-password-flags"] == "4"
    with_pw = linux.networkmanager(linux.Profile(**{**P.__dict__,
                                                    "private_key_password": "pw"}),
                                   "c", "u", None)
    assert "private-key-password=pw" in with_pw and "password-flags" not in with_pw
    assert "[ethernet]" in with_pw and "[wifi]" not in with_pw
