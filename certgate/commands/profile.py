"""`certgate profile eapol_test | wpa_supplicant | networkmanager`: ready EAP-TLS profiles.

A new user types only the certificate paths: the root to trust, the server name to pin,
the TLS versions and the RADIUS address come from the config; the identity is the
certificate's CN and its group is the intermediate that signed it (`--group` checks it).
The renderers are pure (certgate/profiles/linux.py); this shell reads files and writes
`--out` (0600: a profile names the private key) or prints to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from certgate.errors import OperatorError

EXIT_USAGE = 2


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    profile = sub.add_parser(
        "profile", help="print a ready EAP-TLS profile for a device (eapol_test, Apple, "
        "wpa_supplicant, NetworkManager)").add_subparsers(
        dest="profile_command", required=True, parser_class=sub._parser_class)  # noqa: SLF001

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--cert", required=True, metavar="CHAIN.pem",
                        help="the device certificate (certs issue writes NAME.chain.pem: the "
                        "certificate and its group intermediate)")
        sp.add_argument("--key", required=True, metavar="KEY", help="its private key")
        sp.add_argument("--group", help="the group that issued it (default: found from the "
                        "certificate; given, it is checked)")
        sp.add_argument("--identity", help="EAP identity (default: the certificate's CN)")
        sp.add_argument("--key-password-file", metavar="FILE",
                        help="the private key's passphrase, when the key is encrypted")
        sp.add_argument("--out", metavar="FILE", help="write FILE (0600) instead of stdout")

    sp = add("eapol_test", lambda a: run(settings_of(a), a, "eapol_test"),
             "eapol_test configuration and the command line that runs it against this server",
             profile)
    common(sp)
    sp = add("wpa_supplicant", lambda a: run(settings_of(a), a, "wpa_supplicant"),
             "wpa_supplicant.conf: Wi-Fi WPA-Enterprise (--ssid) or wired 802.1X (--wired)",
             profile)
    common(sp)
    _medium(sp)
    sp.add_argument("--interface", default=None, help="interface in the comment's command "
                    "line (default wlan0, wired: eth0)")
    sp = add("networkmanager", lambda a: run(settings_of(a), a, "networkmanager"),
             "NetworkManager keyfile (.nmconnection): Wi-Fi (--ssid) or ethernet (--wired) "
             "802.1X", profile)
    common(sp)
    _medium(sp)
    sp.add_argument("--interface", default=None, help="bind the connection to this interface")
    sp.add_argument("--name", help="connection id (default: certgate-<identity>)")
    sp.add_argument("--uuid", help="connection UUID (default: a new random one)")


def _medium(sp: argparse.ArgumentParser) -> None:
    medium = sp.add_mutually_exclusive_group(required=True)
    medium.add_argument("--ssid", help="the Wi-Fi network (WPA2/WPA3-Enterprise)")
    medium.add_argument("--wired", action="store_true", help="wired 802.1X instead of Wi-Fi")


def _usage(message: str) -> OperatorError:
    return OperatorError(f"profile: {message}", exit_code=EXIT_USAGE)


def device_certificate(path: Path):  # noqa: ANN201
    """The first certificate of the file (PEM chain or DER); a usage error says why not."""
    from radius.verdict import parse_certificates

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"--cert {path}: cannot read: {exc.strerror or exc} (issue one first: "
                     "certgate certs issue --group G --cn NAME --out DIR)") from None
    try:
        return parse_certificates(data)[0]
    except (ValueError, IndexError) as exc:
        raise _usage(f"--cert {path}: {exc or 'no certificate in it'}") from None


def issuing_group(s, cert, wanted: str | None) -> str:  # noqa: ANN001
    """The group whose intermediate signed `cert` (signature checked)."""
    from cryptography.exceptions import InvalidSignature

    from pki.hierarchy import Hierarchy

    names = [g.name for g in s.groups]
    if wanted is not None and wanted not in names:
        raise _usage(f"--group: unknown group {wanted!r} (groups: {', '.join(names)})")
    intermediates = Hierarchy(s.pki).load_certificates_only(s.groups)
    for name, ca in intermediates.items():
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # not this intermediate
            continue
        if wanted is not None and name != wanted:
            raise _usage(f"--cert was issued by group {name}'s intermediate, not {wanted}'s "
                         f"(give --group {name}, or a certificate of {wanted})")
        return name
    raise _usage("--cert was not issued by any group intermediate of this config "
                 f"({', '.join(names)}): RADIUS would refuse it; issue one with "
                 "certgate certs issue --group G --cn NAME --out DIR")


def _common_name(cert) -> str | None:  # noqa: ANN001
    from cryptography.x509.oid import NameOID

    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _client_for(s, host: str):  # noqa: ANN001, ANN202
    import ipaddress

    address = ipaddress.ip_address(host)
    for client in s.radius.clients:
        if address in client.address:
            return client
    return None


def run(s, args: argparse.Namespace, kind: str) -> int:  # noqa: ANN001, C901
    from certgate.profiles import linux
    from pki.hierarchy import Hierarchy

    root = Hierarchy(s.pki).root_cert_path.resolve()
    if not root.exists():
        raise OperatorError(f"the root certificate {root} does not exist: run certgate init")
    cert_path, key_path = Path(args.cert).resolve(), Path(args.key).resolve()
    cert = device_certificate(cert_path)
    if not key_path.is_file():
        raise _usage(f"--key {key_path}: no such file")
    group = issuing_group(s, cert, args.group)
    identity = args.identity or _common_name(cert)
    if not identity:
        raise _usage("--cert has no CN: give --identity")
    password = None
    if args.key_password_file:
        try:
            password = Path(args.key_password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise _usage(f"--key-password-file: cannot read: {exc.strerror or exc}") from None
    p = linux.Profile(server_name=s.pki.server_name, ca_cert=str(root),
                      client_cert=str(cert_path), private_key=str(key_path), identity=identity,
                      tls_min=s.radius.tls_min_version, tls_max=s.radius.tls_max_version,
                      private_key_password=password)
    out = Path(args.out).resolve() if args.out else None
    try:
        if kind == "eapol_test":
            host, port = _radius_address(s)
            client = _client_for(s, host)
            config = getattr(args, "config", None) or os.environ.get("CERTGATE_CONFIG", "")
            config = str(Path(config).resolve()) if config else "the config"
            hint = (f"the secret of [[radius.clients]] {client.name!r} in {config}"
                    if client is not None else f"no [[radius.clients]] entry covers {host}: "
                    "add one")
            text = linux.eapol_test(p, host, port, str(out) if out else "THIS_FILE", hint)
        elif kind == "wpa_supplicant":
            text = linux.wpa_supplicant(p, None if args.wired else args.ssid,
                                        args.interface or ("eth0" if args.wired else "wlan0"))
        else:
            import uuid

            name = args.name or f"certgate-{identity}"
            try:
                conn_uuid = str(uuid.UUID(args.uuid)) if args.uuid else str(uuid.uuid4())
            except ValueError:
                raise _usage(f"--uuid {args.uuid[:64]!r} is not a UUID "
                             "(e.g. the output of uuidgen)") from None
            text = linux.networkmanager(p, name, conn_uuid,
                                        None if args.wired else args.ssid, args.interface,
                                        str(out) if out else f"{name}.nmconnection")
    except ValueError as exc:
        raise _usage(str(exc)) from None
    if out is None:
        sys.stdout.write(text)
    else:
        write_private(out, text)
        shown = "".join(c if c.isprintable() else "?" for c in identity)
        print(f"wrote {out} ({kind}, group {group}, identity {shown})", file=sys.stderr)
        if kind == "networkmanager":
            print("import it (as root):\n  " + "\n  ".join(linux.nmcli_import(str(out))),
                  file=sys.stderr)
    return 0


def _radius_address(s) -> tuple[str, int]:  # noqa: ANN001
    host, port = str(s.radius.listen.host), int(s.radius.listen.port)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host != "::" else "::1"
    return host, port


def write_private(path: Path, text: str | bytes) -> None:
    """0600, replacing an older profile of the same name (it holds no secret of its own)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise _usage(f"--out {path}: cannot write: {exc.strerror or exc}") from None
