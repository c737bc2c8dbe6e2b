"""[groups.<name>]: one intermediate CA each, its RADIUS attributes and SCEP policy."""

from __future__ import annotations

from certgate.settings.mdm import parse_device_id_from, parse_issuance_check
from certgate.settings.model import CA_KEY_TYPES, GROUP_NAME, KEY_TYPES, GroupSettings
from certgate.settings.reader import TableReader, shown
from certgate.settings.reply import DictionaryLoader, parse_reply
from enrollment.algorithms import (
    CIPHERS,
    DEFAULT_CIPHERS,
    DEFAULT_DIGESTS,
    DIGESTS,
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
)


def parse_groups(reader: TableReader, dictionaries: DictionaryLoader) -> tuple[GroupSettings, ...]:
    tables, errors = reader.table, reader.errors
    groups: list[GroupSettings] = []
    for gname, gtable in tables.items():
        prefix = f"groups.{gname}"
        if not isinstance(gtable, dict):
            errors.append(f"{prefix}: expected a table [groups.{gname}]")
            continue
        if not GROUP_NAME.match(gname):
            errors.append(f"{prefix}: group names are 1-32 of a-z 0-9 _ - (used in URLs and labels)")
            continue
        groups.append(_parse_group(gname, reader.child(gtable, prefix), dictionaries))
    if not groups:
        errors.append("groups: define at least one [groups.<name>] table (one intermediate CA each)")
    return tuple(groups)


def _vlan(gr: TableReader, key: str) -> str | None:
    vlan = gr.take(key, (int, str), "a VLAN id (1-4094) or name", None)
    if isinstance(vlan, int) and not 1 <= vlan <= 4094:
        gr.error(key, f"expected a VLAN id between 1 and 4094, got {vlan}")
    if isinstance(vlan, str):
        if not vlan.strip() or len(vlan.encode()) > 253:
            gr.error(key, "expected a VLAN id (1-4094) or a name of 1-253 bytes")
        elif vlan.isdigit() and not 1 <= int(vlan) <= 4094:
            gr.error(key, f"expected a VLAN id between 1 and 4094, got {vlan}")
    return str(vlan) if vlan is not None else None


def _parse_group(gname: str, gr: TableReader, dictionaries: DictionaryLoader) -> GroupSettings:
    vlan = _vlan(gr, "vlan")
    filter_id = gr.str("filter_id")
    class_value = gr.str("class")
    quarantine_vlan = _vlan(gr, "quarantine_vlan")
    quarantine_filter_id = gr.str("quarantine_filter_id")
    expected = 'a table of attribute names and values, e.g. "Aruba-User-Role" = "staff"'
    reply = gr.take("reply", (dict,), expected, {})
    quarantine_reply = gr.take("quarantine_reply", (dict,), expected, {})
    set_keys = {k: k for k, v in (("vlan", vlan), ("filter_id", filter_id),
                                  ("class", class_value)) if v is not None}
    quarantine_keys = {k: f"quarantine_{k}" for k, v in (
        ("vlan", quarantine_vlan), ("filter_id", quarantine_filter_id)) if v is not None}
    if quarantine_vlan is not None and quarantine_vlan == vlan:
        gr.error("quarantine_vlan", f"is the group's own vlan ({vlan}): a held device would not "
                 "be isolated; give the quarantine VLAN or remove the key")
    if (quarantine_filter_id is not None and quarantine_filter_id == filter_id
            and quarantine_vlan in (None, vlan)):
        gr.error("quarantine_filter_id", "is the group's own filter_id: a held device would not "
                 "be isolated; give the quarantine filter or remove the key")
    modes = gr.str_list("challenge_modes", ("dynamic", "blob"), ("dynamic", "blob", "static"))
    static_secret = gr.secret("static_secret", required=False)
    if "static" in modes and not static_secret:
        gr.error("static_secret", 'required when challenge_modes includes "static"')
    if static_secret and "static" not in modes:
        gr.error("challenge_modes", 'add "static" to use static_secret (legacy, off by default)')
    ciphers, digests, scep_max_concurrent = _algorithms(gname, gr)
    ca_is_ra = gr.bool("ca_is_ra", False)
    group = GroupSettings(
        name=gname,
        vlan=vlan,
        filter_id=filter_id,
        class_value=class_value,
        session_timeout=gr.int("session_timeout", None, 60, 31 * 86400),
        reply=parse_reply(gr, "reply", reply, set_keys, dictionaries),
        quarantine_reply=parse_reply(gr, "quarantine_reply", quarantine_reply, quarantine_keys,
                                     dictionaries),
        quarantine_vlan=quarantine_vlan,
        quarantine_filter_id=quarantine_filter_id,
        validity_days=gr.int("validity_days", 365, 1, 3650),
        key_types=gr.str_list("key_types", GroupSettings.key_types, KEY_TYPES),
        ca_key_type=gr.choice("ca_key_type", CA_KEY_TYPES, None),
        challenge_modes=modes,
        static_secret=static_secret,
        scep_ciphers=ciphers,
        scep_digests=digests,
        scep_max_concurrent=scep_max_concurrent,
        ca_is_ra=ca_is_ra,
        # the root in GetCACert: by default, except when the CA is the RA (README "SCEP")
        include_root=gr.bool("include_root", not ca_is_ra),
        manual_approval=gr.bool("manual_approval", False),
        renewal_window_days=gr.int("renewal_window_days", 30, 0, 3650),
        superseded_grace_hours=gr.int("superseded_grace_hours", 24, 0, 24 * 365),
        device_id_from=parse_device_id_from(gr),
        issuance_check=parse_issuance_check(gr),
    )
    gr.finish()
    return group


def _algorithm_list(scep: TableReader, name: str, known: tuple[str, ...]) -> tuple[str, ...] | None:
    value = scep.take(name, (list,), "a list of strings", None)
    if value is None:
        return None
    if not value or not all(isinstance(v, str) for v in value):
        scep.error(name, f"expected a non-empty list of {', '.join(known)}, got {shown(value)}")
        return None
    if "md5" in value:
        scep.error(name, "md5 is never accepted (collisions are practical); remove it")
        return None
    bad = [v for v in value if v not in known]
    if bad:
        scep.error(name, f"unknown {name[:-1]} {shown(bad)}; expected any of {', '.join(known)}")
        return None
    return tuple(dict.fromkeys(value))


def _algorithms(gname: str, gr: TableReader
                ) -> tuple[tuple[str, ...], tuple[str, ...], int | None]:
    """[groups.<name>.scep] ciphers / digests / max_concurrent, and the deprecated
    legacy_algorithms alias."""
    scep = gr.child(gr.table_("scep"), gr.key("scep"))
    ciphers = _algorithm_list(scep, "ciphers", tuple(CIPHERS))
    digests = _algorithm_list(scep, "digests", tuple(DIGESTS))
    max_concurrent = scep.int("max_concurrent", None, 1, 4096)
    scep.finish()
    legacy = gr.bool("legacy_algorithms", None)  # type: ignore[arg-type]
    lists = ciphers is not None or digests is not None
    if legacy and lists:
        gr.error("legacy_algorithms", f"give either legacy_algorithms or [groups.{gname}.scep] "
                 "ciphers/digests, not both: remove legacy_algorithms")
    elif legacy is not None:
        gr.warn("legacy_algorithms", (
            "deprecated; it allows des3, des and sha1 on top of the default" if legacy else
            "deprecated; false is the default") + (
            f": write [groups.{gname}.scep] ciphers = [...] and digests = [...] with what your "
            "clients need (e.g. \"des3\" alone: never single DES or SHA-1 unless a client "
            "cannot do better) and remove legacy_algorithms"))
    if legacy and ciphers is None and digests is None:
        return LEGACY_CIPHERS, LEGACY_DIGESTS, max_concurrent
    return ciphers or DEFAULT_CIPHERS, digests or DEFAULT_DIGESTS, max_concurrent
