"""Device groups: the one domain object shared by RADIUS, SCEP and revocation.

A group is defined by its intermediate CA certificate. RADIUS maps a client
certificate to a group by the *exact* intermediate that issued it (DER
equality, never the DN: rogue chains copy DNs); SCEP maps an endpoint to a
group by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography import x509


@dataclass(frozen=True)
class ExtraAttribute:
    """One attribute of ``[groups.X.reply]`` (or ``quarantine_reply``), encoded once at
    config load (``radius.reply_attributes``): ``type`` and ``value`` are what the packet
    carries (a vendor attribute is type 26 with vendor id, vendor type and length inside)."""

    name: str  # the dictionary name, e.g. "Aruba-User-Role"
    text: str | int  # the configured value as written (an integer stays one), for explain
    type: int
    value: bytes


@dataclass(frozen=True)
class ReplyAttributes:
    """RADIUS attributes put in every Access-Accept for the group."""

    vlan: str | None = None
    filter_id: str | None = None
    class_value: str | None = None
    session_timeout: int | None = None
    extra: tuple[ExtraAttribute, ...] = ()  # [groups.X.reply], in the order written
    quarantine_extra: tuple[ExtraAttribute, ...] = ()  # [groups.X.quarantine_reply]
    # where a held certificate (certificateHold, MDM non-compliant) is admitted, with
    # quarantine_extra; none of the three set: a held certificate is rejected like a revoked one
    quarantine_vlan: str | None = None
    quarantine_filter_id: str | None = None

    @property
    def has_quarantine(self) -> bool:
        return bool(self.quarantine_vlan or self.quarantine_filter_id or self.quarantine_extra)


@dataclass(frozen=True)
class Group:
    name: str
    intermediate: x509.Certificate
    reply: ReplyAttributes = field(default_factory=ReplyAttributes)

    @property
    def key_id(self) -> bytes:
        try:
            ski = self.intermediate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            )
            return ski.value.digest
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(
                self.intermediate.public_key()
            ).digest


class GroupTable:
    """Lookup table built at start-up. Only the RADIUS reply attributes may change later
    (a config reload, ``replace_replies``); names and intermediates never do."""

    def __init__(self, groups: Iterable[Group]) -> None:
        self._by_name: dict[str, Group] = {}
        self._by_der: dict[bytes, Group] = {}  # exact DER: no hash to compute per lookup
        for group in groups:
            if group.name in self._by_name:
                raise ValueError(f"duplicate group name {group.name!r}")
            der = group.intermediate.public_bytes(_DER)
            if der in self._by_der:
                other = self._by_der[der].name
                raise ValueError(f"groups {other!r} and {group.name!r} share one intermediate")
            self._by_name[group.name] = group
            self._by_der[der] = group

    def __iter__(self) -> Iterator[Group]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def by_name(self, name: str) -> Group | None:
        return self._by_name.get(name)

    def for_intermediate(self, certificate: x509.Certificate) -> Group | None:
        """The group whose intermediate is exactly this certificate (same DER), else None."""
        return self._by_der.get(certificate.public_bytes(_DER))

    def names(self) -> list[str]:
        return list(self._by_name)

    def replies(self) -> dict[str, ReplyAttributes]:
        return {name: g.reply for name, g in self._by_name.items()}

    def replace_replies(self, replies: dict[str, ReplyAttributes]) -> list[str]:
        """Give groups new reply attributes (names not in the table are ignored); returns the
        names whose attributes changed. Each swap is one dict assignment per index, so a
        lookup sees the old or the new group, never a mix."""
        changed: list[str] = []
        for name, reply in replies.items():
            old = self._by_name.get(name)
            if old is None or old.reply == reply:
                continue
            group = Group(old.name, old.intermediate, reply)
            self._by_name[name] = group
            self._by_der[old.intermediate.public_bytes(_DER)] = group
            changed.append(name)
        return changed


from cryptography.hazmat.primitives.serialization import Encoding as _Encoding  # noqa: E402

_DER = _Encoding.DER
