"""`certgate test-auth --cert C --key K [--server HOST:PORT] [--secret S] [--tls 1.2|1.3]`.

The radtest of EAP-TLS: a built-in supplicant + NAS (radius.client) authenticates once over
RADIUS/UDP and prints each round trip, the result with its reason, the TLS session, the
reply attributes and whether the MS-MPPE keys match the TLS session's MSK ("MPPE keys OK").

With a config (--config or CERTGATE_CONFIG), defaults come from it: the server from
[radius] listen, the secret of the [[radius.clients]] entry matching our source address
when the server is this machine (never printed), the root of the PKI to verify the server
and its server_name. Exit: 0 Access-Accept with MPPE keys verified, 1 Access-Reject,
2 usage or config error, 3 no answer, 4 protocol error (or an Accept whose keys are wrong).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from certgate.errors import OperatorError

EXIT_USAGE = 2
SECRET_ENV = "CERTGATE_RADIUS_SECRET"


def add_parsers(sub, add, settings_of) -> None:  # noqa: ANN001
    sp = add("test-auth", lambda args: run(args, settings_of),
             "authenticate once with EAP-TLS over RADIUS, like a device would (the radtest of "
             "EAP-TLS); exit 0 accept, 1 reject, 2 usage, 3 no answer, 4 protocol error")
    sp.add_argument("--cert", metavar="FILE",
                    help="device certificate (PEM; certificates after the first are sent as "
                    "its chain)")
    sp.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    sp.add_argument("--p12", metavar="FILE", help="instead of --cert/--key: a PKCS#12 file "
                    "(certs issue --p12), its certificates sent as the chain")
    sp.add_argument("--p12-password-file", metavar="FILE",
                    help="the PKCS#12 password (default: none)")
    sp.add_argument("--server", metavar="HOST:PORT",
                    help="RADIUS server (default: [radius] listen of the config)")
    sp.add_argument("--secret", help=f"shared secret (visible in ps: prefer --secret-file or "
                    f"${SECRET_ENV}; default: the config's client entry for a local server)")
    sp.add_argument("--secret-file", metavar="FILE", help="read the shared secret from FILE")
    sp.add_argument("--tls", choices=("1.2", "1.3"), help="only this TLS version "
                    "(default: 1.2 to 1.3, the server chooses)")
    sp.add_argument("--ca", metavar="FILE", help="trust anchors for the server certificate "
                    "(default: the root of the config's PKI)")
    sp.add_argument("--no-verify-server", action="store_true",
                    help="do not verify the server certificate (reported in the output)")
    sp.add_argument("--server-name", metavar="NAME", help="DNS name the server certificate "
                    "must carry (default with a config: [pki] server_name)")
    sp.add_argument("--identity", help="EAP identity and User-Name (default: the certificate CN)")
    sp.add_argument("--nas-ip", metavar="ADDR", help="NAS-IP-Address (default: our source address)")
    sp.add_argument("--calling-station", default="02-00-00-00-00-01", metavar="MAC",
                    help="Calling-Station-Id (default %(default)s)")
    sp.add_argument("--timeout", type=_positive, default=3.0, metavar="SECONDS",
                    help="wait for each reply (default %(default)s s; retransmitted --retries times)")
    sp.add_argument("--retries", type=int, choices=range(0, 11), default=2, metavar="N",
                    help="retransmissions of an unanswered request (default %(default)s)")
    sp.add_argument("--fragment-size", type=int, default=1024, metavar="BYTES",
                    help="largest EAP-TLS fragment we send (default %(default)s)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:32]!r} is not a number of seconds") from None
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 300 seconds")
    return value


def _usage(message: str) -> OperatorError:
    return OperatorError(f"test-auth: {message}", exit_code=EXIT_USAGE)


def parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _usage(f"--server {text[:64]!r}: expected HOST:PORT, e.g. 127.0.0.1:1812 or "
                     "[::1]:1812")
    return host, int(port)


def _source_address(host: str, port: int) -> str | None:
    """The local address a datagram to host:port leaves from (no packet is sent)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return s.getsockname()[0]
    except OSError:
        return None


def _is_local(host: str, source: str | None) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or (source is not None and str(address) == source)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _usage(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def _load_client(args: argparse.Namespace) -> tuple:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if args.p12:
        if args.cert or args.key:
            raise _usage("give --p12 or --cert/--key, not both")
        return _load_p12(args)
    if not (args.cert and args.key):
        raise _usage("give --cert FILE and --key FILE (or --p12 FILE)")
    data = _read(args.cert, "--cert")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise _usage(f"--cert {args.cert}: not a PEM or DER certificate") from None
    try:
        key = serialization.load_pem_private_key(_read(args.key, "--key"), password=None)
    except TypeError:
        raise _usage(f"--key {args.key}: the key is encrypted; give an unencrypted copy") from None
    except ValueError:
        raise _usage(f"--key {args.key}: not a PEM private key") from None
    return certs[0], certs[1:], key


def _load_p12(args: argparse.Namespace) -> tuple:
    from cryptography.hazmat.primitives.serialization import pkcs12

    password = None
    if args.p12_password_file:
        password = _read(args.p12_password_file, "--p12-password-file").rstrip(b"\r\n")
    try:
        key, leaf, extra = pkcs12.load_key_and_certificates(_read(args.p12, "--p12"), password)
    except ValueError:
        raise _usage(f"--p12 {args.p12}: not PKCS#12, or the password is wrong "
                     "(--p12-password-file)") from None
    if key is None or leaf is None:
        raise _usage(f"--p12 {args.p12}: needs a certificate and its private key")
    return leaf, list(extra), key


def _settings(args: argparse.Namespace, settings_of):  # noqa: ANN001, ANN202
    if getattr(args, "config", None) or os.environ.get("CERTGATE_CONFIG"):
        return settings_of(args)
    return None


def _secret(args: argparse.Namespace, settings, host: str, source: str | None) -> bytes:  # noqa: ANN001
    given = [n for n, v in (("--secret", args.secret), ("--secret-file", args.secret_file)) if v]
    if len(given) > 1:
        raise _usage("give --secret or --secret-file, not both")
    if args.secret:
        return args.secret.encode()
    if args.secret_file:
        text = _read(args.secret_file, "--secret-file").decode("utf-8", "replace").strip("\r\n")
        if not text:
            raise _usage(f"--secret-file {args.secret_file} is empty")
        return text.encode()
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode()
    if settings is not None and _is_local(host, source):
        import ipaddress

        try:
            me = ipaddress.ip_address(source or host)
        except ValueError:
            me = None
        for client in settings.radius.clients:
            if me is not None and me.version == client.address.version and me in client.address:
                return client.secret.encode()
        raise _usage(f"no [[radius.clients]] entry of the config covers our address {me}; "
                     f"give --secret, --secret-file or ${SECRET_ENV}")
    raise _usage(f"no shared secret: give --secret-file FILE, ${SECRET_ENV} or --secret "
                 "(or --config for a server on this machine)")


def _trust(args: argparse.Namespace, settings) -> tuple[list | None, str]:  # noqa: ANN001
    from cryptography import x509

    if args.no_verify_server:
        if args.ca:
            raise _usage("--ca and --no-verify-server contradict each other")
        return None, "not verified"
    if args.ca:
        path = args.ca
    elif settings is not None:
        from pki.hierarchy import Hierarchy

        path = str(Hierarchy(settings.pki).root_cert_path)
        if not Path(path).exists():
            raise _usage(f"the config's PKI has no root yet ({path}): run `certgate init` or "
                         "give --ca")
    else:
        raise _usage("--ca FILE is needed to verify the server certificate (or --config for "
                     "the PKI's root, or --no-verify-server)")
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "--ca"))
    except ValueError:
        raise _usage(f"--ca {path}: no PEM certificate in it") from None
    return certs, f"chain verified to {path}"


def run(args: argparse.Namespace, settings_of) -> int:  # noqa: ANN001
    import json

    from radius.client import report, udp
    from radius.client.exchange import Exchange, NasOptions
    from radius.client.supplicant import Supplicant, client_context

    leaf, chain, key = _load_client(args)
    settings = _settings(args, settings_of)
    if args.server:
        host, port = parse_server(args.server)
    elif settings is not None:
        host, port = settings.radius.listen.host, settings.radius.listen.port
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    else:
        raise _usage("--server HOST:PORT is needed (or --config to use [radius] listen)")
    if not 64 <= args.fragment_size <= 4000:
        raise _usage("--fragment-size must be 64 to 4000 bytes")
    source = _source_address(host, port)
    secret = _secret(args, settings, host, source)
    trust, verify = _trust(args, settings)
    server_name = args.server_name
    if server_name is None and settings is not None and _is_local(host, source):
        server_name = settings.pki.server_name
    identity = args.identity
    if identity is None:
        from cryptography.x509.oid import NameOID

        cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        identity = str(cns[0].value) if cns else "anonymous"
    tls_min, tls_max = (args.tls, args.tls) if args.tls else ("1.2", "1.3")
    try:
        context = client_context(certificate=leaf, private_key=key, chain=chain, trust=trust,
                                 tls_min=tls_min, tls_max=tls_max)
    except Exception as exc:  # OpenSSL refuses the pair: the operator's files
        raise _usage(f"--cert/--key cannot be used: {exc}") from None
    nas_ip = args.nas_ip or source
    if nas_ip is not None:
        import ipaddress

        try:
            ipaddress.ip_address(nas_ip)
        except ValueError:
            raise _usage(f"--nas-ip {nas_ip[:64]!r} is not an IP address") from None
    supplicant = Supplicant(context, identity.encode(), fragment_size=args.fragment_size,
                            server_name=server_name)
    options = NasOptions(secret=secret, user_name=identity.encode(), nas_ip=nas_ip,
                         calling_station=args.calling_station, timeout=args.timeout,
                         retries=args.retries)
    exchange = Exchange(supplicant, options)
    udp.run(exchange, host, port)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    result = report.build(exchange, server=shown,
                          tls_requested=args.tls or "1.2-1.3", verify=verify)
    ignored = " ".join(result["ignored_replies"])
    if result["result"] == "no_answer" and "ICMP" in ignored:
        result["hint"] = (f"nothing listens at {shown} (ICMP port unreachable came back): is the "
                          "server running, and is that its [radius] listen port?")
    elif result["result"] == "no_answer" and "wrong secret" in ignored:
        result["hint"] = ("the server answered, but its replies fail the authenticator check "
                          "with our secret: the shared secret is wrong")
    elif result["result"] == "no_answer":
        result["hint"] = (
            f"either the shared secret is wrong (a RADIUS server silently drops a request whose "
            f"Message-Authenticator does not verify), or nothing answers at {shown} (server "
            f"down, wrong port, firewall), or {source or 'our address'} is not a configured "
            "RADIUS client of that server")
    if result["result"] == "reject":
        # certgate puts no reason on the wire (RFC 3579 §2.6.5: no Reply-Message next to
        # EAP-Message); on the server's own machine the decision can be asked directly.
        result["server_explain"] = _explain_locally(settings, host, source, leaf, chain)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(report.render(result, result.get("hint", "")))
    return int(result["exit_code"])


def _explain_locally(settings, host: str, source: str | None, leaf, chain) -> dict | None:  # noqa: ANN001
    """`certgate explain` of our certificate when the config is the server's: its verdict,
    reason and hint, or None (no config, a remote server, or a store it cannot read)."""
    if settings is None or not _is_local(host, source):
        return None
    import asyncio
    import datetime as dt

    from certgate.commands.explain import _explain, trust_material
    from store import StoreUnavailable

    try:
        root, intermediates, groups = trust_material(settings)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        answer = asyncio.run(_explain(settings, [leaf], list(chain), None, None, root,
                                      intermediates, groups, now))
    except (OperatorError, StoreUnavailable) as exc:
        return {"error": str(getattr(exc, "detail", None) or exc)}
    except Exception as exc:  # noqa: BLE001 - an aside: never lose the authentication's report
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {key: answer.get(key) for key in ("verdict", "reason", "detail", "group", "hint")}
