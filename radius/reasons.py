"""Why an EAP authentication ended: the ``reason`` label of
``certgate_eap_authentications_total`` and the word in the result log line.

A closed set, so metric cardinality stays bounded. Free-text detail goes to the log.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    OK = "ok"
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
