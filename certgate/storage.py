"""Opens the configured store ([storage] path or url) for the server and the CLI."""

from __future__ import annotations

from certgate.errors import OperatorError
from certgate.settings import Settings
from store import Store, StoreOpenError, open_store


async def open_configured(settings: Settings, *, migrate: bool = True) -> Store:
    """The store named by [storage]; an OperatorError naming what to check if it cannot be
    opened, or if its schema is newer than this certgate."""
    st = settings.storage
    try:
        store = await open_store(
            path=st.path, url=st.url, timeout=st.timeout, pool_size=st.pool_size,
            statement_cache=st.statement_cache,
            poll_interval=settings.radius.revocation_poll_interval, migrate=migrate,
        )
    except StoreOpenError as exc:
        raise OperatorError(str(exc)) from None
    from certgate.audit.wiring import attach_direct

    try:
        attach_direct(settings, store)  # CLI decisions reach [audit] file and syslog too
    except BaseException:  # a bad syslog_ca: close, else the store's thread keeps us alive
        await store.close()
        raise
    return store
