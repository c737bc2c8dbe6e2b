"""Why an EAP authentication ended: the ``reason`` label of
``certgate_eap_authentications_total`` and the word in the result log line.

A closed set, so metric cardinality stays bounded. Free-text detail goes to the log.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    OK = "ok"
    QUARANTINED = "quarantined"  # accepted, into the group's quarantine (certificate on hold)
    # certificate / policy (peer's fault)
    NO_CERTIFICATE = "no_certificate"
    UNKNOWN_ISSUER = "unknown_issuer"  # chain does not reach our root (rogue, foreign CA)
    UNKNOWN_GROUP = "unknown_group"  # chain reaches our root, but not via a group CA
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_EKU = "bad_eku"
    REVOKED = "revoked"
    NOT_ISSUED = "not_issued"  # verifies to a group CA, but certgate's inventory never issued it
    CHAIN_INVALID = "chain_invalid"  # any other X.509 verification error
    # protocol (peer's fault)
    TLS_ERROR = "tls_error"
    NAK = "nak"
    MALFORMED_EAP = "malformed_eap"
    TOO_MANY_ROUND_TRIPS = "too_many_round_trips"
    TIMEOUT = "timeout"
    UNKNOWN_STATE = "unknown_state"  # State attribute not (or no longer) in our table
    NOT_EAP = "not_eap"  # Access-Request without EAP-Message (certgate is EAP-only)
    # ours
    OVERLOADED = "overloaded"
    BUFFERS_FULL = "buffers_full"  # no room in the buffer budget (radius.buffers)
    STORE_UNAVAILABLE = "store_unavailable"  # never seen and the store cannot be asked
    INTERNAL_ERROR = "internal_error"


# OpenSSL X509_V_ERR_* codes seen in the verify callback -> reason.
X509_ERROR_REASONS: dict[int, Reason] = {
    2: Reason.UNKNOWN_ISSUER,  # UNABLE_TO_GET_ISSUER_CERT
    7: Reason.UNKNOWN_ISSUER,  # CERT_SIGNATURE_FAILURE (issuer with a copied DN)
    9: Reason.NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: Reason.EXPIRED,  # CERT_HAS_EXPIRED
    18: Reason.UNKNOWN_ISSUER,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: Reason.UNKNOWN_ISSUER,  # SELF_SIGNED_CERT_IN_CHAIN (foreign root sent by the peer)
    20: Reason.UNKNOWN_ISSUER,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: Reason.UNKNOWN_ISSUER,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: Reason.REVOKED,  # CERT_REVOKED
    26: Reason.BAD_EKU,  # INVALID_PURPOSE (no clientAuth EKU)
    30: Reason.UNKNOWN_ISSUER,  # AKID_SKID_MISMATCH
    31: Reason.UNKNOWN_ISSUER,  # AKID_ISSUER_SERIAL_MISMATCH
}


# Deny reason -> the X509_V_ERR_* name (without the prefix) the verify callback sets
# (radius.tls_verify), and so the TLS alert OpenSSL's x509table sends the supplicant
# (ssl/statem/statem_lib.c; every pair is pinned by tests/unit/radius/test_tls_verify.py).
# No X509_V_ERR maps to access_denied (OpenSSL 4.0.3, every code 1..129 tried), so a
# policy refusal of a certificate that is otherwise fine (not in the inventory, and any
# reason not listed) gets APPLICATION_VERIFICATION -> handshake_failure: the code OpenSSL
# reserves for the application's own check, mapped explicitly rather than through the
# table's certificate_unknown fallback for unlisted codes.
DENY_X509_ERROR: dict[Reason, str] = {
    Reason.REVOKED: "CERT_REVOKED",  # certificate_revoked (revoked or on hold)
    Reason.EXPIRED: "CERT_HAS_EXPIRED",  # certificate_expired (leaf or group CA)
    Reason.NOT_YET_VALID: "CERT_NOT_YET_VALID",  # bad_certificate
    Reason.UNKNOWN_ISSUER: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",  # unknown_ca
    Reason.UNKNOWN_GROUP: "INVALID_CA",  # unknown_ca: under our root, not a group CA
    Reason.BAD_EKU: "INVALID_PURPOSE",  # unsupported_certificate: not a device certificate
    Reason.CHAIN_INVALID: "CERT_REJECTED",  # bad_certificate
    Reason.NOT_ISSUED: "APPLICATION_VERIFICATION",  # handshake_failure (policy)
    Reason.STORE_UNAVAILABLE: "UNSPECIFIED",  # internal_error: our fault, not the device's
    Reason.INTERNAL_ERROR: "UNSPECIFIED",  # internal_error
}
X509_APPLICATION_VERIFICATION = "APPLICATION_VERIFICATION"  # any other Deny reason

# The alert each Deny reason produces (what eapol_test / a supplicant shows), for docs,
# `certgate explain` and tests.
DENY_ALERT: dict[Reason, str] = {
    Reason.REVOKED: "certificate_revoked",
    Reason.EXPIRED: "certificate_expired",
    Reason.NOT_YET_VALID: "bad_certificate",
    Reason.UNKNOWN_ISSUER: "unknown_ca",
    Reason.UNKNOWN_GROUP: "unknown_ca",
    Reason.BAD_EKU: "unsupported_certificate",
    Reason.CHAIN_INVALID: "bad_certificate",
    Reason.NOT_ISSUED: "handshake_failure",
    Reason.STORE_UNAVAILABLE: "internal_error",
    Reason.INTERNAL_ERROR: "internal_error",
}
DEFAULT_DENY_ALERT = "handshake_failure"
