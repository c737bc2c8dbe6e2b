"""The MDM link: [mdm] (reconciliation with the MDM's device list) and each group's
issuance check ([groups.<name>] issuance_webhook*, device_id_from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from certgate.settings.reader import TableReader, shown

MIN_SECRET_CHARS = 16
MAX_PAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class IssuanceCheckSettings:
    """[groups.<name>] issuance_webhook: ask the MDM before issuing (enrollment/issuance_check.py)."""

    url: str
    secret: str  # HMAC key of X-Certgate-Signature; never logged
    token: str | None = None  # Authorization: Bearer; never logged
    timeout: float = 5.0  # seconds for the whole call (connect, send, answer)
    fail_open: bool = False  # an MDM error (not a deny) issues anyway


@dataclass(frozen=True)
class MdmSettings:
    """[mdm]: periodic reconciliation with the MDM's list of enrolled devices."""

    reconcile_url: str | None = None
    reconcile_token: str | None = None
    reconcile_interval: float = 3600.0  # seconds between passes of `certgate serve`; 0: CLI only
    reconcile_timeout: float = 30.0  # seconds per page
    reconcile_groups: tuple[str, ...] = ()
    max_revoke_fraction: float = 0.05  # brake: a pass revoking more of a group revokes nothing
    reconcile_min_age: float = 900.0  # seconds: younger certificates are left alone
    max_pages: int = 1000
    max_page_bytes: int = MAX_PAGE_BYTES
    ca_file: Path | None = None  # CA bundle for https:// MDM URLs (default: the system's)


def url_problem(url: str) -> str | None:
    """Why `url` is not an http(s) URL with a host, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL (check the port)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http(s) URL like \"https://mdm.example.net/certgate/...\""
    if parts.username or parts.password:
        return "must not carry credentials (use the _token / _secret keys)"
    return None


def _has_error(r: TableReader, name: str) -> bool:
    return any(e.startswith(r.key(name)) for e in r.errors)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def plain_http_warning(url: str) -> str | None:
    """Why an http:// URL to another host is risky, or None (https, or this host)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    return (f"plain http to {host}: the MDM's answers are not signed, so anyone on the path "
            "can forge them (an allow, or a device list that revokes); use https://")


def _url(r: TableReader, name: str) -> str | None:
    url = r.str(name)
    if url is not None:
        problem = url_problem(url)
        if problem:
            r.error(name, f"{problem}, got {shown(url)}")
            return None
        warning = plain_http_warning(url)
        if warning:
            r.warn(name, warning)
    return url


def _secret_ok(r: TableReader, name: str, value: str | None) -> str | None:
    if value is not None and (len(value) < MIN_SECRET_CHARS or not value.isprintable()):
        r.error(name, f"must be at least {MIN_SECRET_CHARS} printable characters "
                "(e.g. `openssl rand -hex 24`)")
        return None
    return value


def parse_issuance_check(gr: TableReader) -> IssuanceCheckSettings | None:
    """The issuance_webhook* keys of one [groups.<name>] table (None: no check)."""
    url = _url(gr, "issuance_webhook")
    secret = _secret_ok(gr, "issuance_webhook_secret",
                        gr.secret("issuance_webhook_secret", required=False))
    token = _secret_ok(gr, "issuance_webhook_token",
                       gr.secret("issuance_webhook_token", required=False))
    timeout = gr.float("issuance_webhook_timeout", 5.0, 0.1, 60.0)
    fail_open = gr.bool("issuance_webhook_fail_open", False)
    if url is None:
        if not _has_error(gr, "issuance_webhook"):
            for name, given in (("issuance_webhook_secret", secret), ("issuance_webhook_token", token)):
                if given is not None:
                    gr.error(name, "has no effect without issuance_webhook")
        return None
    if secret is None:
        if not _has_error(gr, "issuance_webhook_secret"):
            gr.error("issuance_webhook_secret", "is required with issuance_webhook (or "
                     "issuance_webhook_secret_env / _file): the requests to the MDM are signed")
        return None
    return IssuanceCheckSettings(url=url, secret=secret, token=token, timeout=timeout,
                                 fail_open=fail_open)


def parse_device_id_from(gr: TableReader) -> str:
    from enrollment.issuance_check import CHALLENGE, parse_device_id_source

    text = gr.str("device_id_from", CHALLENGE)
    try:
        parse_device_id_source(text)
    except ValueError as exc:
        gr.error("device_id_from", f"{exc}, got {shown(text)}")
        return CHALLENGE
    return text


def parse_mdm(md: TableReader, base: Path, groups: tuple[str, ...]) -> MdmSettings:
    url = _url(md, "reconcile_url")
    token = _secret_ok(md, "reconcile_token", md.secret("reconcile_token", required=False))
    names = md.str_list("reconcile_groups", ())
    for name in names:
        if name not in groups:
            md.error("reconcile_groups", f"no group named {shown(name)} (configured: "
                     f"{', '.join(groups) or 'none'})")
    mdm = MdmSettings(
        reconcile_url=url,
        reconcile_token=token,
        reconcile_interval=md.float("reconcile_interval", 3600.0, 0.0, 7 * 86400.0),
        reconcile_timeout=md.float("reconcile_timeout", 30.0, 1.0, 600.0),
        reconcile_groups=tuple(dict.fromkeys(names)),
        max_revoke_fraction=md.float("max_revoke_fraction", 0.05, 0.0, 1.0),
        reconcile_min_age=md.float("reconcile_min_age", 900.0, 0.0, 30 * 86400.0),
        max_pages=md.int("max_pages", 1000, 1, 100_000),
        max_page_bytes=md.int("max_page_bytes", MAX_PAGE_BYTES, 1024, 256 * 1024 * 1024),
        ca_file=md.path("ca_file", base, None),
    )
    if url is not None:
        if token is None and not _has_error(md, "reconcile_token"):
            md.error("reconcile_token", "is required with reconcile_url (or reconcile_token_env / "
                     "_file): the MDM's device list is read with a bearer token")
        if not mdm.reconcile_groups:
            md.error("reconcile_groups", "list the groups whose certificates follow the MDM's "
                     "device list (e.g. [\"staff\"]); other groups are never reconciled")
    elif not _has_error(md, "reconcile_url") and (token is not None or names):
        md.error("reconcile_url", "is required with reconcile_token / reconcile_groups")
    if 0 < mdm.reconcile_interval < 1:
        md.error("reconcile_interval", "expected 0 (no periodic pass) or at least 1 second")
    if mdm.ca_file is not None and not mdm.ca_file.is_file():
        md.error("ca_file", f"{mdm.ca_file} is not a readable file (a PEM CA bundle)")
    md.finish()
    return mdm
