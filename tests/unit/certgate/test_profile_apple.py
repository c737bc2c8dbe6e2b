"""certgate/profiles/apple.py: the .mobileconfig round-trips through plistlib and every key is
one Apple documents, with the documented type and values.

The tables below are transcribed from Apple's device-management schema, the YAML the
developer.apple.com/documentation/devicemanagement pages are generated from:
https://github.com/apple/device-management (commit b6202ca2, 2024-10-21), mdm/profiles/
  TopLevel.yaml                 required: PayloadContent, PayloadIdentifier, PayloadType
                                (rangelist: Configuration), PayloadUUID, PayloadVersion (1)
  CommonPayloadKeys.yaml        required in every payload: PayloadIdentifier, PayloadUUID,
                                PayloadType, PayloadVersion (1)
  com.apple.security.root.yaml  required: PayloadContent (<data>)
  com.apple.security.scep.yaml  required: PayloadContent (<dictionary>) and in it URL
  com.apple.wifi.managed.yaml   EAPClientConfiguration.AcceptEAPTypes required; the rest
                                optional
  com.apple.firstactiveethernet.managed.yaml  "ANY: keys relevant to 802.1x configuration"
(https://developer.apple.com/documentation/devicemanagement/scep, .../wifi, .../root).
"""

from __future__ import annotations

import datetime as dt
import plistlib
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certgate.profiles import apple

UUID_RE = re.compile(r"^[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-"
                     r"[0-9A-Za-z]{12}$")  # the format com.apple.wifi.managed.yaml gives UUIDs

# key -> (type, required, allowed values or None)
TOP = {"PayloadContent": (list, True, None), "PayloadIdentifier": (str, True, None),
       "PayloadType": (str, True, {"Configuration"}), "PayloadUUID": (str, True, None),
       "PayloadVersion": (int, True, {1}), "PayloadDescription": (str, False, None),
       "PayloadDisplayName": (str, False, None), "PayloadOrganization": (str, False, None),
       "PayloadScope": (str, False, {"System", "User"})}
COMMON = {"PayloadIdentifier": (str, True, None), "PayloadUUID": (str, True, None),
          "PayloadType": (str, True, None), "PayloadVersion": (int, True, {1}),
          "PayloadDescription": (str, False, None), "PayloadDisplayName": (str, False, None),
          "PayloadOrganization": (str, False, None)}
ROOT = {"PayloadCertificateFileName": (str, False, None), "PayloadContent": (bytes, True, None)}
SCEP = {"PayloadContent": (dict, True, None)}
SCEP_CONTENT = {"URL": (str, True, None), "Name": (str, False, None),
                "Subject": (list, False, None), "Challenge": (str, False, None),
                "Keysize": (int, False, {1024, 2048, 4096}), "Key Type": (str, False, {"RSA"}),
                "Key Usage": (int, False, {1, 4, 5}), "CAFingerprint": (bytes, False, None),
                "Retries": (int, False, None), "RetryDelay": (int, False, None),
                "SubjectAltName": (dict, False, None)}
SAN = {"rfc822Name", "dNSName", "uniformResourceIdentifier", "ntPrincipalName"}
WIFI = {"SSID_STR": (str, False, None), "HIDDEN_NETWORK": (bool, False, None),
        "AutoJoin": (bool, False, None),
        "EncryptionType": (str, False, {"WEP", "WPA", "WPA2", "WPA3", "Any", "None"}),
        "PayloadCertificateUUID": (str, False, None),
        "EAPClientConfiguration": (dict, False, None)}
EAP = {"AcceptEAPTypes": (list, True, None), "UserName": (str, False, None),
       "PayloadCertificateAnchorUUID": (list, False, None),
       "TLSTrustedServerNames": (list, False, None),
       "TLSMinimumVersion": (str, False, {"1.0", "1.1", "1.2", "1.3"}),
       "TLSMaximumVersion": (str, False, {"1.0", "1.1", "1.2", "1.3"})}
EAP_TYPES = {13, 17, 18, 21, 23, 25, 43}  # AcceptEAPTypes rangelist
# the Ethernet payload's schema is "ANY 802.1X key": we allow the Wi-Fi payload's 802.1X ones
ETHERNET = {"PayloadCertificateUUID": WIFI["PayloadCertificateUUID"],
            "EAPClientConfiguration": WIFI["EAPClientConfiguration"]}
PAYLOADS = {"com.apple.security.root": ROOT, "com.apple.security.scep": SCEP,
            "com.apple.wifi.managed": WIFI, "com.apple.firstactiveethernet.managed": ETHERNET}


def check_keys(where: str, d: dict, schema: dict) -> None:
    for key, (kind, required, allowed) in schema.items():
        if required:
            assert key in d, f"{where}: required key {key} missing"
        if key in d:
            assert type(d[key]) is kind, f"{where}.{key}: {type(d[key]).__name__}, not {kind}"
            if allowed is not None:
                assert d[key] in allowed, f"{where}.{key} = {d[key]!r} not in {allowed}"
    unknown = set(d) - set(schema)
    assert not unknown, f"{where}: {unknown} are not documented keys"


def check_profile(profile: dict) -> None:
    """Every key of `profile` against Apple's schema; cross-references resolved."""
    check_keys("profile", profile, TOP)
    assert UUID_RE.match(profile["PayloadUUID"])
    uuids = {p["PayloadUUID"]: p for p in profile["PayloadContent"]}
    assert len(uuids) == len(profile["PayloadContent"]), "payload UUIDs must be unique"
    idents = [p["PayloadIdentifier"] for p in profile["PayloadContent"]]
    assert len(set(idents)) == len(idents), "PayloadIdentifier must be unique in the profile"
    for p in profile["PayloadContent"]:
        schema = PAYLOADS[p["PayloadType"]]
        check_keys(p["PayloadType"], p, {**COMMON, **schema})
        assert UUID_RE.match(p["PayloadUUID"])
        assert p["PayloadIdentifier"].startswith(profile["PayloadIdentifier"] + ".")
        if p["PayloadType"] == "com.apple.security.scep":
            content = p["PayloadContent"]
            check_keys("SCEP.PayloadContent", content, SCEP_CONTENT)
            for rdn in content.get("Subject", []):  # [[[type, value]], ...]
                assert isinstance(rdn, list) and rdn
                for pair in rdn:
                    assert isinstance(pair, list) and len(pair) == 2
                    assert all(isinstance(x, str) for x in pair)
            assert set(content.get("SubjectAltName", {})) <= SAN
            if "CAFingerprint" in content:  # SecSCEP.c: MD5 or SHA-1 only
                assert len(content["CAFingerprint"]) in (16, 20)
        if "EAPClientConfiguration" in p:
            eap = p["EAPClientConfiguration"]
            check_keys(f"{p['PayloadType']}.EAPClientConfiguration", eap, EAP)
            assert set(eap["AcceptEAPTypes"]) <= EAP_TYPES
            for anchor in eap.get("PayloadCertificateAnchorUUID", []):
                assert uuids[anchor]["PayloadType"] == "com.apple.security.root"
            assert uuids[p["PayloadCertificateUUID"]]["PayloadType"] == "com.apple.security.scep"


def _cert(subject: str, key, issuer_name: str, issuer_key, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    rk, ik, ak = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", rk, "root", rk, True)
    inter = _cert("inter", ik, "root", rk, True)
    ra = _cert("ra", ak, "inter", ik, False)
    return ra, inter, root


def _profile(root: x509.Certificate, **changes) -> apple.Profile:
    scep = {"url": "https://pki.example.net/scep/staff", "name": "staff",
            "subject": (("O", "Example"), ("CN", "mac-01")), "challenge": "c-123",
            "sans": ("dns:mac-01.example.net", "email:a@example.net", "dns:mac-01")}
    network = {"server_names": ("radius.example.net",), "ssid": "Corp \"Wi-Fi\"",
               "wired": True, "username": "mac-01"}
    scep.update(changes.pop("scep", {}))
    network.update(changes.pop("network", {}))
    top = {"identifier": "net.example.certgate.staff",
           "uuid": "5f1e3a52-0c47-4f8a-9d43-6b1c2a7e9b10", "display_name": "Example",
           "organization": "Example", "root_name": "Example Root",
           "root_der": root.public_bytes(serialization.Encoding.DER), **changes}
    return apple.Profile(scep=apple.Scep(**scep), network=apple.Network(**network), **top)


def test_round_trips_with_every_key_documented(chain) -> None:
    ra, inter, root = chain
    fp = apple.sha1_fingerprint(root)
    data = apple.render(_profile(root, scep={"ca_fingerprint": fp}))
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    profile = plistlib.loads(data)
    assert profile == apple.build(_profile(root, scep={"ca_fingerprint": fp}))
    check_profile(profile)
    by_type = {p["PayloadType"]: p for p in profile["PayloadContent"]}
    assert set(by_type) == set(PAYLOADS)
    assert x509.load_der_x509_certificate(
        by_type["com.apple.security.root"]["PayloadContent"]) == root
    scep = by_type["com.apple.security.scep"]["PayloadContent"]
    assert scep["Subject"] == [[["O", "Example"]], [["CN", "mac-01"]]]
    assert scep["Key Type"] == "RSA" and scep["Keysize"] == 2048 and scep["Key Usage"] == 5
    assert scep["SubjectAltName"] == {"dNSName": ["mac-01.example.net", "mac-01"],
                                      "rfc822Name": "a@example.net"}
    assert scep["CAFingerprint"] == fp and scep["Challenge"] == "c-123"
    wifi = by_type["com.apple.wifi.managed"]
    assert wifi["SSID_STR"] == 'Corp "Wi-Fi"' and wifi["EncryptionType"] == "WPA2"
    eap = wifi["EAPClientConfiguration"]
    assert eap["AcceptEAPTypes"] == [13] and eap["TLSTrustedServerNames"] == [
        "radius.example.net"]
    assert (eap["TLSMinimumVersion"], eap["TLSMaximumVersion"]) == ("1.2", "1.3")
    assert by_type["com.apple.firstactiveethernet.managed"]["EAPClientConfiguration"] == eap


def test_uuids_are_deterministic_from_the_profile_uuid(chain) -> None:
    root = chain[2]
    a, b = apple.build(_profile(root)), apple.build(_profile(root))
    assert a == b and a["PayloadUUID"] == "5F1E3A52-0C47-4F8A-9D43-6B1C2A7E9B10"
    other = apple.build(_profile(root, uuid="0c2d0a3e-1b7e-4c55-8f34-2a4b9c1d7e60"))
    assert {p["PayloadUUID"] for p in a["PayloadContent"]}.isdisjoint(
        p["PayloadUUID"] for p in other["PayloadContent"])


def test_wifi_only_and_optional_keys_left_out(chain) -> None:
    profile = apple.build(_profile(chain[2], scep={"challenge": None, "sans": ()},
                                   network={"wired": False, "username": None,
                                            "encryption": "WPA3"}))
    check_profile(profile)
    types = [p["PayloadType"] for p in profile["PayloadContent"]]
    assert types == ["com.apple.security.root", "com.apple.security.scep",
                     "com.apple.wifi.managed"]
    scep = profile["PayloadContent"][1]["PayloadContent"]
    assert not {"Challenge", "SubjectAltName", "CAFingerprint"} & set(scep)
    assert profile["PayloadContent"][2]["EncryptionType"] == "WPA3"


@pytest.mark.parametrize(("changes", "message"), [
    ({"scep": {"keysize": 3072}}, "Keysize 3072"),
    ({"scep": {"ca_fingerprint": b"\0" * 32}}, "SHA-1 (20 bytes) or MD5"),
    ({"scep": {"sans": ("ip:10.0.0.1",)}}, "SAN 'ip:10.0.0.1'"),
    ({"scep": {"subject": (("CN", "x"), ("bogus", "y"))}}, "Subject type 'bogus'"),
    ({"network": {"ssid": "x" * 33}}, "an SSID is 1-32 bytes"),
    ({"network": {"ssid": None, "wired": False}}, "ssid) or wired"),
    ({"network": {"encryption": "WEP"}}, "EncryptionType 'WEP'"),
    ({"network": {"tls_min": "1.3", "tls_max": "1.2"}}, "TLS versions 1.3-1.2"),
])
def test_bad_values_are_named(chain, changes, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        apple.build(_profile(chain[2], **changes))


def test_chain_top_is_what_apples_scep_client_takes_as_the_ca(chain) -> None:
    ra, inter, root = chain
    assert apple.chain_top([ra, inter, root]) == root  # include_root: the root, always
    assert apple.chain_top([ra, inter]) == inter  # without it: the intermediate
    assert apple.chain_top([inter]) == inter  # ca_is_ra: the one certificate
    stranger = _cert("x", ec.generate_private_key(ec.SECP256R1()), "y",
                     ec.generate_private_key(ec.SECP256R1()), False)
    assert apple.chain_top([ra, stranger]) is None  # nothing chains
    assert len(apple.sha1_fingerprint(root)) == 20
