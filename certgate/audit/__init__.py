"""Audit stream: one structured event per security decision (docs/audit-events.md).

Events are built as plain JSON-serialisable mappings (certgate.audit.events) and
handed to sinks (certgate.audit.sinks) that never block the caller.
"""
