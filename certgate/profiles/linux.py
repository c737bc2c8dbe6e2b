"""EAP-TLS profiles for Linux supplicants: wpa_supplicant/eapol_test and NetworkManager.

Why these keys: the device must trust only certgate's root (`ca_cert` / `ca-cert`) and pin
the RADIUS server certificate's name; certgate's server certificate carries `[pki]
server_name` as a SAN dNSName, which is what `domain_suffix_match` / `domain-suffix-match`
compare (a suffix match on a label boundary, the option both wpa_supplicant and
NetworkManager have had the longest; only certificates under the pinned root can match).
TLS versions follow `[radius] tls_min_version` / `tls_max_version`.

Values are quoted per format: wpa_supplicant strings are written as hex when they contain
a quote, a backslash or a non-printable character (wpa_supplicant parses unquoted hex for
every string field); NetworkManager keyfile values use GKeyFile escapes, and an SSID that is
not plain printable text is written as the byte list keyfile accepts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")

# NMSetting8021xAuthFlags (libnm): TLS_1_0_DISABLE 0x1, TLS_1_1_DISABLE 0x2,
# TLS_1_2_DISABLE 0x4, TLS_1_3_DISABLE 0x10
NM_TLS_DISABLE = {"1.0": 0x1, "1.1": 0x2, "1.2": 0x4, "1.3": 0x10}


@dataclass(frozen=True)
class Profile:
    """What every profile needs; paths absolute (supplicants run from another directory)."""

    server_name: str  # the RADIUS server certificate's SAN dNSName to pin
    ca_cert: str  # the root certificate file the device trusts
    client_cert: str  # the device certificate (leaf + group intermediate: NAME.chain.pem)
    private_key: str
    identity: str  # EAP identity (the certificate's CN)
    tls_min: str = "1.2"
    tls_max: str = "1.3"
    private_key_password: str | None = None


def _check_versions(p: Profile) -> None:
    if p.tls_min not in TLS_VERSIONS or p.tls_max not in TLS_VERSIONS or p.tls_min > p.tls_max:
        raise ValueError(f"TLS versions {p.tls_min}-{p.tls_max}: expected 1.0-1.3, min <= max")


def tls_phase1(p: Profile) -> str:
    """wpa_supplicant phase1: every version outside [tls_min, tls_max] disabled, the others
    explicitly enabled (wpa_supplicant 2.9 kept TLS 1.3 off for EAP unless told)."""
    _check_versions(p)
    return " ".join(
        f"tls_disable_tlsv{v.replace('.', '_')}={0 if p.tls_min <= v <= p.tls_max else 1}"
        for v in TLS_VERSIONS)


def nm_auth_flags(p: Profile) -> int:
    _check_versions(p)
    return sum(flag for v, flag in NM_TLS_DISABLE.items() if not p.tls_min <= v <= p.tls_max)


# -- wpa_supplicant ------------------------------------------------------------------------


def wpa_string(value: str) -> str:
    """A wpa_supplicant string value: "quoted", or hex when quoting cannot carry it."""
    if value and all(c.isprintable() and c not in '"\\' for c in value) and value.isascii():
        return f'"{value}"'
    return value.encode().hex()


def _comment(text: str) -> str:
    """One comment line; anything that could end it (newline, CR) is replaced."""
    return "# " + "".join(c if c.isprintable() else "?" for c in text)


def _network_block(p: Profile, head: list[tuple[str, str]], tail: list[tuple[str, str]]
                   ) -> list[str]:
    body = [*head, ("eap", "TLS"), ("identity", wpa_string(p.identity)),
            ("ca_cert", wpa_string(p.ca_cert)),
            ("domain_suffix_match", wpa_string(p.server_name)),
            ("client_cert", wpa_string(p.client_cert)),
            ("private_key", wpa_string(p.private_key))]
    if p.private_key_password:
        body.append(("private_key_passwd", wpa_string(p.private_key_password)))
    body += [("phase1", f'"{tls_phase1(p)}"'), *tail]
    return ["network={", *(f"\t{k}={v}" for k, v in body), "}"]


def eapol_test(p: Profile, radius_host: str, radius_port: int, config_file: str,
               secret_hint: str) -> str:
    """An eapol_test configuration (wired-style IEEE 802.1X network block) with the command
    that runs it; the shared secret is left to $SECRET (`secret_hint` says where it is)."""
    command = ["eapol_test", "-c", config_file, "-a", radius_host, "-p", str(radius_port),
               "-s"]
    lines = [
        _comment(f"eapol_test EAP-TLS profile for {p.identity} against certgate"),
        _comment(f"pins the RADIUS server name {p.server_name} under the root {p.ca_cert}"),
        "# run (prints SUCCESS and 'MPPE keys OK' when accepted):",
        _comment(" ".join(shlex.quote(a) for a in command) + ' "$SECRET"'),
        _comment(f"SECRET: {secret_hint}"),
        *_network_block(p, [("key_mgmt", "IEEE8021X")], [("eapol_flags", "0")]),
    ]
    return "\n".join(lines) + "\n"


def wpa_supplicant(p: Profile, ssid: str | None, interface: str = "wlan0") -> str:
    """A wpa_supplicant.conf: WPA2/3-Enterprise Wi-Fi for `ssid`, or wired 802.1X (`ssid`
    None: ap_scan=0, key_mgmt=IEEE8021X, `wpa_supplicant -D wired`)."""
    if ssid is None:
        head_lines = [
            _comment(f"wpa_supplicant wired 802.1X EAP-TLS profile for {p.identity}"),
            _comment(f"run: wpa_supplicant -D wired -i {interface} -c THIS_FILE"),
            "ap_scan=0",
        ]
        block = _network_block(p, [("key_mgmt", "IEEE8021X")], [("eapol_flags", "0")])
    else:
        _check_ssid(ssid)
        head_lines = [
            _comment(f"wpa_supplicant Wi-Fi (WPA-Enterprise) EAP-TLS profile for {p.identity}"),
            _comment(f"run: wpa_supplicant -i {interface} -c THIS_FILE"),
        ]
        block = _network_block(p, [("ssid", wpa_string(ssid)), ("scan_ssid", "1"),
                                   ("key_mgmt", "WPA-EAP WPA-EAP-SHA256"), ("proto", "RSN"),
                                   ("ieee80211w", "1")], [])
    head_lines.append(_comment(f"pins the RADIUS server name {p.server_name} under the root "
                               f"{p.ca_cert}"))
    return "\n".join([*head_lines, *block]) + "\n"


def _check_ssid(ssid: str) -> None:
    if not 1 <= len(ssid.encode()) <= 32:
        raise ValueError(f"an SSID is 1-32 bytes, got {len(ssid.encode())}")


# -- NetworkManager keyfile ----------------------------------------------------------------


def keyfile_string(value: str) -> str:
    """GKeyFile escaping (nm-settings-keyfile(5) values are GKeyFile strings)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    out = out.replace("\r", "\\r")
    if out.startswith(" "):
        out = "\\s" + out[1:]
    return out


def keyfile_ssid(ssid: str) -> str:
    """Plain text when it reads back unchanged, else the `b1;b2;...;` byte list."""
    _check_ssid(ssid)
    if ssid.isascii() and ssid.isprintable() and ssid.strip() == ssid and not any(
            c in ssid for c in ";\\#"):
        return ssid
    return "".join(f"{b};" for b in ssid.encode())


def nmcli_import(path: str) -> tuple[str, str]:
    """Commands that hand a keyfile to NetworkManager (it loads root-owned 0600 keyfiles
    named *.nmconnection from its system-connections directory)."""
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(".nmconnection"):
        name += ".nmconnection"
    target = f"/etc/NetworkManager/system-connections/{name}"
    return (f"sudo install -m 600 -o root -g root {shlex.quote(path)} {shlex.quote(target)}",
            f"sudo nmcli connection load {shlex.quote(target)}")


def networkmanager(p: Profile, connection_id: str, uuid: str, ssid: str | None,
                   interface: str | None = None, file_name: str = "THIS_FILE") -> str:
    """A NetworkManager keyfile (`.nmconnection`, to be written 0600): Wi-Fi WPA-EAP for
    `ssid`, or a wired (ethernet) 802.1X connection when `ssid` is None."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    conn = [("id", keyfile_string(connection_id)), ("uuid", uuid),
            ("type", "wifi" if ssid is not None else "ethernet")]
    if interface:
        conn.append(("interface-name", keyfile_string(interface)))
    sections.append(("connection", conn))
    if ssid is not None:
        sections.append(("wifi", [("mode", "infrastructure"), ("ssid", keyfile_ssid(ssid))]))
        sections.append(("wifi-security", [("key-mgmt", "wpa-eap")]))
    else:
        sections.append(("ethernet", []))
    dot1x = [("eap", "tls;"), ("identity", keyfile_string(p.identity)),
             ("ca-cert", keyfile_string(p.ca_cert)),
             ("domain-suffix-match", keyfile_string(p.server_name)),
             ("client-cert", keyfile_string(p.client_cert)),
             ("private-key", keyfile_string(p.private_key))]
    if p.private_key_password:
        dot1x.append(("private-key-password", keyfile_string(p.private_key_password)))
    else:  # an unencrypted key: no password to ask the user for (NM_SETTING_SECRET_FLAG_NOT_REQUIRED)
        dot1x.append(("private-key-password-flags", "4"))
    flags = nm_auth_flags(p)
    if flags:
        dot1x.append(("phase1-auth-flags", str(flags)))
    sections.append(("802-1x", dot1x))
    sections.append(("ipv4", [("method", "auto")]))
    sections.append(("ipv6", [("addr-gen-mode", "default"), ("method", "auto")]))
    out = [_comment(f"NetworkManager 802.1X EAP-TLS connection for {p.identity}, pinning "
                    f"{p.server_name}"),
           "# import (as root; NetworkManager loads root-owned 0600 keyfiles):",
           *(_comment(c) for c in nmcli_import(file_name)), ""]
    for name, items in sections:
        out.append(f"[{name}]")
        out += [f"{k}={v}" for k, v in items]
        out.append("")
    return "\n".join(out)
