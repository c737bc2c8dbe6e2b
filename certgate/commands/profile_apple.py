"""`certgate profile apple`: an Apple configuration profile (.mobileconfig) for a group.

SCEP payload (the group's endpoint under [http] public_url, RSA as Apple's SCEP client
requires, the challenge: a one-time one created now with --challenge, or a placeholder the
MDM replaces), the root certificate payload, and an EAP-TLS Wi-Fi (--ssid) and/or
first-active-Ethernet (--wired) payload trusting only that root and the RADIUS server name.
The builder is pure (certgate/profiles/apple.py); this shell reads the config, the PKI files
and, for --challenge, the store. The profile is unsigned (README: sign it or let the MDM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certgate.commands import subcommands
from certgate.errors import OperatorError

EXIT_USAGE = 2
CHALLENGE_PLACEHOLDER = "$CHALLENGE"
CN_PLACEHOLDER = "$DEVICE_NAME"


def add_parsers(sub: argparse._SubParsersAction, add, settings_of) -> None:  # noqa: ANN001
    sp = add("apple", lambda a: run(settings_of(a), a),
             "Apple .mobileconfig: SCEP enrollment + EAP-TLS Wi-Fi (--ssid) and/or wired "
             "802.1X (--wired), trusting only the root", subcommands(sub, "profile"))
    sp.add_argument("--group", required=True, help="the group whose SCEP endpoint enrolls")
    sp.add_argument("--ssid", help="Wi-Fi network (WPA2/WPA3-Enterprise, EAP-TLS)")
    sp.add_argument("--wired", action="store_true",
                    help="also (or only) wired 802.1X on the first active Ethernet interface")
    sp.add_argument("--encryption", choices=("WPA2", "WPA3"), default="WPA2",
                    help="EncryptionType (default WPA2: since iOS 16 / macOS 13 it joins WPA2 "
                    "or WPA3; WPA3: WPA3 only)")
    sp.add_argument("--hidden", action="store_true", help="the SSID is not broadcast")
    sp.add_argument("--cn", help=f"certificate subject CN (default {CN_PLACEHOLDER!r}, a "
                    "placeholder for the MDM's device-name variable; required with "
                    "--challenge)")
    sp.add_argument("--san", action="append", metavar="dns:X|email:X|uri:X",
                    help="SubjectAltName the device requests (repeat)")
    challenge = sp.add_mutually_exclusive_group()
    challenge.add_argument("--challenge", action="store_true",
                           help="create a one-time dynamic challenge now (bound to the group, "
                           "--cn, --san and the RSA key size) and put it in the profile")
    challenge.add_argument("--challenge-placeholder", metavar="TEXT",
                           help=f"written as the Challenge for the MDM to replace (default "
                           f"{CHALLENGE_PLACEHOLDER!r}; see docs/mdm/)")
    sp.add_argument("--device-id", help="with --challenge: the MDM's device id the challenge (and "
                    "so the certificate, for the device-removed webhook) is bound to")
    sp.add_argument("--challenge-ttl", default="1h",
                    help="lifetime of the --challenge one (e.g. 30m, 1h, 2d; max 7d)")
    sp.add_argument("--keysize", type=int, choices=(2048, 4096), default=2048,
                    help="RSA key size (Apple's SCEP payload generates RSA only; default 2048)")
    sp.add_argument("--retries", type=int, default=None,
                    help="polls while PENDING (default 3; 10 for a manual_approval group)")
    sp.add_argument("--retry-delay", type=int, default=None,
                    help="seconds between polls (default 10; 60 for a manual_approval group)")
    sp.add_argument("--identifier", help="PayloadIdentifier (default certgate.<group>): a "
                    "device replaces an installed profile with the same identifier")
    sp.add_argument("--uuid", help="the profile's PayloadUUID; payload UUIDs derive from it, "
                    "so the same --uuid writes the same profile (default: a new random one)")
    sp.add_argument("--display-name", help="PayloadDisplayName (default: certgate <group>)")
    sp.add_argument("--scope", choices=("System", "User"), default="System",
                    help="macOS PayloadScope (default System: the system keychain, usable "
                    "at the login window)")
    sp.add_argument("--out", metavar="FILE", help="write FILE (0600) instead of stdout")


def _usage(message: str) -> OperatorError:
    return OperatorError(f"profile apple: {message}", exit_code=EXIT_USAGE)


def _bounded(value: int | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not low <= value <= high:
        raise _usage(f"{name} {value}: expected {low}-{high}")
    return value


def getcacert_certificates(s, group) -> list:  # noqa: ANN001
    """The certificates GetCACert returns for `group`, in its order (RA, group CA[, root]; or
    the CA[, root] with ca_is_ra), as enrollment/scep_service.py builds them."""
    from pki.hierarchy import Hierarchy, read_certificate

    h = Hierarchy(s.pki)
    gdir = h.group_dir(group.name)
    try:
        ca = read_certificate(gdir / "ca.crt")
        certs = [ca] if group.ca_is_ra else [read_certificate(gdir / "ra.crt"), ca]
        if group.include_root:
            certs.append(read_certificate(h.root_cert_path))
    except (OSError, ValueError) as exc:
        raise OperatorError(f"group {group.name}'s SCEP certificates in {gdir}: {exc} (run "
                            "certgate init)") from None
    return certs


def _fingerprint(s, group) -> tuple[bytes | None, str | None]:  # noqa: ANN001
    """CAFingerprint, or None and why it was left out (see certgate/profiles/apple.py)."""
    from certgate.profiles import apple

    certs = getcacert_certificates(s, group)
    top = apple.chain_top(certs)
    if top is None:
        return None, "GetCACert's certificates do not form one chain"
    if len(certs) == 1 or group.include_root:
        return apple.sha1_fingerprint(top), None
    return None, (f"group {group.name}'s GetCACert does not include the root, so the CA an "
                  "Apple device picks depends on whether it already holds the root; set "
                  f"[groups.{group.name}] include_root = true to pin it")


def _create_challenge(s, group: str, cn: str, sans: list[str], keysize: int, ttl: str,  # noqa: ANN001
                      device_id: str | None) -> str:
    import asyncio
    import re

    from certgate.bootstrap import utc_now
    from certgate.storage import open_configured
    from enrollment.challenge_store import create_dynamic, parse_ttl
    from pki.hierarchy import Hierarchy

    try:
        lifetime = parse_ttl(ttl)
    except ValueError as exc:
        raise _usage(f"--challenge-ttl: {exc}") from None
    secret_path = Hierarchy(s.pki).challenge_secret_path
    try:
        secret = secret_path.read_bytes()
    except FileNotFoundError:
        raise OperatorError(f"{secret_path} is missing: run `certgate init`") from None

    async def go() -> str:
        store = await open_configured(s)
        try:
            created = await create_dynamic(
                store, secret, group, now=utc_now(), actor="cli:profile-apple", ttl=lifetime,
                subject_cn=cn, sans=sans, device_id=device_id, key_types=[f"rsa-{keysize}"])
        except (ValueError, re.error) as exc:
            raise _usage(str(exc)) from None
        finally:
            await store.close()
        print(f"challenge jti {created.jti}, group {group}, CN {cn!r}, expires "
              f"{created.expires_at.isoformat()}", file=sys.stderr)
        return created.token

    return asyncio.run(go())


def run(s, args: argparse.Namespace) -> int:  # noqa: ANN001, C901
    import uuid as uuidlib

    from certgate.profiles import apple
    from pki.hierarchy import Hierarchy

    group = s.group(args.group)
    if group is None:
        raise _usage(f"--group: unknown group {args.group!r} (groups: "
                     f"{', '.join(g.name for g in s.groups)})")
    if args.ssid is None and not args.wired:
        raise _usage("give --ssid NAME (Wi-Fi), --wired (Ethernet 802.1X) or both")
    if f"rsa-{args.keysize}" not in group.key_types:
        raise _usage(f"--keysize {args.keysize}: group {group.name}'s key_types "
                     f"({', '.join(group.key_types)}) do not allow rsa-{args.keysize}, and "
                     "Apple's SCEP payload generates RSA keys only")
    if args.challenge and not args.cn:
        raise _usage("--challenge binds the challenge to the certificate's CN: give --cn NAME")
    if args.device_id and not args.challenge:
        raise _usage("--device-id binds the challenge --challenge creates: give --challenge")
    try:
        profile_uuid = str(uuidlib.UUID(args.uuid)) if args.uuid else str(uuidlib.uuid4())
    except ValueError:
        raise _usage(f"--uuid {args.uuid[:64]!r} is not a UUID (e.g. the output of "
                     "uuidgen)") from None
    retries = _bounded(args.retries, "--retries", 10 if group.manual_approval else 3, 0, 100)
    delay = _bounded(args.retry_delay, "--retry-delay", 60 if group.manual_approval else 10,
                     1, 3600)
    cn = args.cn or CN_PLACEHOLDER
    sans = list(args.san or [])
    root_path = Hierarchy(s.pki).root_cert_path
    try:
        root_der = apple.root_der(root_path.read_bytes())
    except OSError as exc:
        raise OperatorError(f"the root certificate {root_path}: {exc.strerror or exc}: run "
                            "certgate init") from None
    fingerprint, why_not = _fingerprint(s, group)
    # validate everything (SAN syntax, SSID length...) before a challenge is stored
    def profile(challenge: str | None) -> apple.Profile:
        return apple.Profile(
            identifier=args.identifier or f"certgate.{group.name}", uuid=profile_uuid,
            display_name=args.display_name or f"certgate {group.name}",
            organization=s.pki.organization, root_der=root_der,
            root_name=s.pki.root_common_name, scope=args.scope,
            scep=apple.Scep(url=f"{s.http.public_url}/scep/{group.name}", name=group.name,
                            subject=(("O", s.pki.organization), ("CN", cn)),
                            challenge=challenge, keysize=args.keysize, retries=retries,
                            retry_delay=delay, sans=tuple(sans), ca_fingerprint=fingerprint),
            network=apple.Network(server_names=(s.pki.server_name,), ssid=args.ssid,
                                  wired=args.wired, encryption=args.encryption,
                                  hidden=args.hidden, tls_min=s.radius.tls_min_version,
                                  tls_max=s.radius.tls_max_version, username=cn))

    try:
        apple.build(profile(CHALLENGE_PLACEHOLDER))
    except ValueError as exc:
        raise _usage(_option_of(str(exc))) from None
    if args.challenge:
        challenge = _create_challenge(s, group.name, cn, sans, args.keysize, args.challenge_ttl,
                                      args.device_id)
    else:
        challenge = args.challenge_placeholder or CHALLENGE_PLACEHOLDER
    data = apple.render(profile(challenge))
    if why_not:
        print(f"note: CAFingerprint left out: {why_not}", file=sys.stderr)
    if not args.challenge:
        print(f"note: Challenge is {challenge!r} and the CN {cn!r}: the MDM must replace "
              "placeholders (docs/mdm/); for a manual install give --cn NAME --challenge",
              file=sys.stderr)
    if not args.out:
        sys.stdout.buffer.write(data)
        return 0
    from certgate.commands.profile import write_private

    out = Path(args.out).resolve()
    write_private(out, data)
    print(f"wrote {out} (Apple profile, group {group.name}, unsigned)", file=sys.stderr)
    return 0


def _option_of(message: str) -> str:
    """The builder's message with the option that set the value in front."""
    for prefix, option in (("an SSID", "--ssid"), ("SAN", "--san"), ("Subject", "--cn"),
                           ("TLS versions", "[radius] tls_min_version/tls_max_version")):
        if message.startswith(prefix):
            return f"{option}: {message}"
    return message
