"""SCEP metrics (declared once; incremented by the service and HTTP shells only).

Label values are closed sets: operation is a SCEP operation name or "unknown";
message_type a MessageType name, "unknown" (a PKIOperation that did not decode) or
"none" (operations without a message); result one of RESULTS; reason a
ChallengeReason / RenewalReason / CsrReason value or a failInfo name; algorithm one of
enrollment.algorithms.ALGORITHM_LABELS.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RESULTS = ("success", "failure", "pending", "bad_request", "not_found", "unavailable", "shed",
           "error")

SCEP_REQUESTS = Counter(
    "certgate_scep_requests_total",
    "SCEP requests by group, operation, message type and result",
    ["group", "operation", "message_type", "result"],
)
SCEP_DURATION = Histogram(
    "certgate_scep_request_duration_seconds",
    "Time to answer a SCEP request (HTTP handler, all operations)",
    ["operation"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CERTIFICATES_ISSUED = Counter(
    "certgate_certificates_issued_total", "Certificates issued through SCEP", ["group"]
)
ALGORITHM_REFUSALS = Counter(
    "certgate_scep_algorithm_refusals_total",
    "SCEP requests refused with badAlg, by the algorithm refused (a config name of "
    "[groups.<name>.scep] ciphers/digests, md5, or other: one certgate does not implement)",
    ["group", "algorithm"],
)
CHALLENGE_FAILURES = Counter(
    "certgate_scep_challenge_failures_total",
    "SCEP enrollment refusals by reason (challenge, CSR policy, renewal, algorithm)",
    ["group", "reason"],
)
SCEP_SHED = Counter(
    "certgate_scep_shed_total",
    "SCEP PKIOperations answered 503 + Retry-After before any work, to stay within the "
    "group's [scep] max_concurrent / max_queued / queue_timeout (enrollment/admission.py)",
    ["group", "reason"],
)
SCEP_IN_PROGRESS = Gauge(  # [server] workers > 1: summed over the live workers
    "certgate_scep_in_progress", "SCEP PKIOperations being served, by group", ["group"],
    multiprocess_mode="livesum")
SCEP_QUEUED = Gauge(
    "certgate_scep_queued", "SCEP PKIOperations waiting for a slot, by group", ["group"],
    multiprocess_mode="livesum")
SCEP_QUEUE_WAIT = Histogram(
    "certgate_scep_queue_wait_seconds",
    "Time a SCEP PKIOperation waited for a slot before it was served or shed",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
