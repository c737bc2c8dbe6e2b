"""Process-wide gauges: build info, inventory by group/status, CA and server cert expiry."""

from __future__ import annotations

import datetime as dt
import platform

from cryptography.hazmat.backends.openssl.backend import backend as _openssl_backend
from prometheus_client import Counter, Gauge, disable_created_metrics

from certgate import __version__

# No `<counter>_created` series: they double the series count and no dashboard or
# alert here reads them (Prometheus derives resets itself).
disable_created_metrics()

BUILD_INFO = Gauge(
    "certgate_build_info", "Always 1; labels carry the build", ["version", "python", "openssl"],
    multiprocess_mode="max",
)
CERTIFICATES = Gauge(
    "certgate_certificates", "Device certificates in the inventory", ["group", "status"],
    multiprocess_mode="mostrecent",
)
EXPIRING = Gauge(
    "certgate_certificates_expiring", "Active device certificates expiring within a window",
    ["group", "within"],
    multiprocess_mode="mostrecent",
)
SCEP_PENDING = Gauge(
    "certgate_scep_pending_requests", "SCEP requests waiting for a manual decision", ["group"],
    multiprocess_mode="mostrecent",
)
CA_EXPIRY = Gauge(
    "certgate_ca_cert_expiry_timestamp_seconds", "notAfter of CA certificates", ["ca"],
    multiprocess_mode="mostrecent",
)
SERVER_CERT_EXPIRY = Gauge(
    "certgate_server_cert_expiry_timestamp_seconds", "notAfter of the RADIUS server certificate",
    multiprocess_mode="mostrecent",
)
REVOCATION_ENTRIES = Gauge(
    "certgate_revocation_entries", "Revoked serials in the in-memory index", ["group"],
    multiprocess_mode="mostrecent",
)
REVOCATION_LAST_UPDATE = Gauge(
    "certgate_revocation_last_update_timestamp_seconds", "When the revocation index last changed",
    multiprocess_mode="max",
)
STORE_UP = Gauge(
    "certgate_store_up", "1 when the store answers (last query and the change feed)",
    multiprocess_mode="livemin",
)
STORE_ERRORS = Counter("certgate_store_errors_total",
                       "Store operations that failed because the database did not answer", ["op"])
STORE_BACKEND = Gauge("certgate_store_info", "Always 1; the label names the store backend",
                      ["backend", "node"],
                      multiprocess_mode="max")
STORE_FEED_POSITION = Gauge("certgate_store_change_seq",
                            "Change-feed position this node has applied",
                            multiprocess_mode="livemin")

EXPIRY_WINDOWS = {"7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}


def set_build_info() -> None:
    BUILD_INFO.labels(
        version=__version__,
        python=platform.python_version(),
        openssl=_openssl_backend.openssl_version_text(),
    ).set(1)
