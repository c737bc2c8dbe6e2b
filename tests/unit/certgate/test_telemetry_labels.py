"""certgate.telemetry.labels: every known series is exported at 0 before anything happens."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from certgate.telemetry import labels

# Names no other test uses: the registry is process-wide and other tests revoke, enroll
# and authenticate in groups such as "staff".
GROUPS = ("zl-staff", "zl-lab-1")
CLIENTS = ("zl-wlc-a", "zl-wlc-b")


def exported() -> str:
    labels.zero_series(GROUPS, CLIENTS)
    return generate_latest().decode()


def series(text: str, family: str) -> dict[str, float]:
    """{'{labels}': value} of one family in the exposition text."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(rf"^{family}(\{{[^}}]*\}}) (\S+)$", text, re.MULTILINE)}


def test_radius_series_per_configured_client_start_at_zero() -> None:
    text = exported()
    dropped = series(text, "certgate_radius_dropped_total")
    for client in CLIENTS:
        key = f'{{client="{client}",reason="missing_message_authenticator"}}'
        assert dropped[key] == 0.0
        for transport in ("udp", "radsec"):
            assert series(text, "certgate_radius_requests_total")[
                f'{{client="{client}",code="access_request",transport="{transport}"}}'] == 0.0
            assert series(text, "certgate_radius_accounting_requests_total")[
                f'{{client="{client}",status_type="stop",transport="{transport}"}}'] == 0.0
        assert series(text, "certgate_radius_duplicate_requests_total")[
            f'{{client="{client}"}}'] == 0.0
        assert series(text, "certgate_coa_requests_total")[
            f'{{client="{client}",kind="disconnect",result="timeout"}}'] == 0.0
        assert series(text, "certgate_radius_conversations_shed_total")[
            f'{{client="{client}",reason="client_share"}}'] == 0.0
    assert '{client="unknown",reason="unknown_client"}' in dropped  # shared: present
    auth = series(text, "certgate_eap_authentications_total")
    assert auth[f'{{group="{GROUPS[0]}",reason="ok",result="accept",tls_version="1.3"}}'] == 0.0
    assert '{group="none",reason="unknown_issuer",result="reject",tls_version="none"}' in auth


def test_enrollment_and_revocation_series_per_configured_group_start_at_zero() -> None:
    text = exported()
    for group in GROUPS:
        assert series(text, "certgate_scep_challenge_failures_total")[
            f'{{group="{group}",reason="replay"}}'] == 0.0
        assert series(text, "certgate_scep_requests_total")[
            f'{{group="{group}",message_type="PKCSReq",operation="PKIOperation",'
            'result="success"}'] == 0.0
        assert series(text, "certgate_certificates_issued_total")[f'{{group="{group}"}}'] == 0.0
        assert series(text, "certgate_scep_pending_requests")[f'{{group="{group}"}}'] == 0.0
        assert series(text, "certgate_revocations_total")[
            f'{{group="{group}",reason="keyCompromise"}}'] == 0.0
        assert series(text, "certgate_ocsp_requests_total")[
            f'{{group="{group}",outcome="revoked"}}'] == 0.0
        assert series(text, "certgate_crl_requests_total")[
            f'{{format="pem",group="{group}"}}'] == 0.0
        assert series(text, "certgate_certificates_expiring")[
            f'{{group="{group}",within="7d"}}'] == 0.0
    # process-wide series (no group label): present; other tests in this process count them
    assert '{result="bad_signature"}' in series(text, "certgate_webhook_requests_total")
    assert '{reason="bad_token"}' in series(text, "certgate_admin_denied_total")


def test_label_values_are_closed_sets() -> None:
    """What zero_series adds names only configured groups and clients, the fixed placeholders
    and enum values, and stays small (the registry is process-wide: compare before/after)."""
    before = set(generate_latest().decode().splitlines())
    labels.zero_series(["closed-g"], ["closed-nas"])
    added = [ln for ln in generate_latest().decode().splitlines()
             if ln not in before and not ln.startswith("#")]
    assert added, "a new group and client add series"
    for line in added:
        for value in re.findall(r'\bgroup="([^"]*)"', line):
            assert value == "closed-g", line
        for value in re.findall(r'\bclient="([^"]*)"', line):
            assert value == "closed-nas", line
    assert len(added) < 400, len(added)  # per group + client, whatever the traffic


def test_idempotent_never_resets_a_counter() -> None:
    exported()
    from certgate.revocations import REVOCATIONS

    REVOCATIONS.labels(group=GROUPS[0], reason="superseded").inc()
    text = exported()
    assert series(text, "certgate_revocations_total")[
        f'{{group="{GROUPS[0]}",reason="superseded"}}'] == 1.0
