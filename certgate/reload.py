"""SIGHUP: re-read the config file and apply what can change without a restart.

Applied live: each group's RADIUS reply attributes (``vlan``, ``filter_id``, ``class``,
``session_timeout``, ``[reply]``, ``quarantine_vlan``, ``quarantine_filter_id``,
``[quarantine_reply]``). New authentications
get them at once; the active sessions of a group whose VLAN, Filter-Id or quarantine changed
get a CoA-Request with what they should carry now (Disconnect when the NAS NAKs or does not
answer, ``radius.dynamic_auth``). Anything else that differs (listeners, clients, groups
added or removed, storage, PKI) is named in one warning and waits for a restart. A file
that does not parse or validate changes nothing: the errors are logged, the old settings
stay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from certgate.errors import ConfigError
from certgate.runtime import Runtime
from certgate.settings import GroupSettings, Settings, load_settings
from pki.groups import ReplyAttributes
from pki.hierarchy import reply_attributes
from radius import dynamic_auth

log = logging.getLogger("certgate.reload")

REPLY_FIELDS = ("vlan", "filter_id", "class_value", "session_timeout", "reply",
                "quarantine_vlan", "quarantine_filter_id", "quarantine_reply")


def reply_of(g: GroupSettings) -> ReplyAttributes:
    return reply_attributes(g)


def _rest(groups: tuple[GroupSettings, ...]) -> list[GroupSettings]:
    """The groups with their reply attributes blanked: what must not change live."""
    return [dataclasses.replace(g, **dict.fromkeys(REPLY_FIELDS)) for g in groups]


def plan_reload(old: Settings, new: Settings) -> tuple[Settings, dict[str, ReplyAttributes],
                                                        list[str]]:
    """(settings to run with, new reply attributes per group, what needs a restart). Only
    the reply attributes of groups present in both are taken from ``new``."""
    restart = [f.name for f in dataclasses.fields(Settings)
               if f.name not in ("groups", "path")
               and getattr(old, f.name) != getattr(new, f.name)]
    if _rest(old.groups) != _rest(new.groups):
        restart.append("groups (other than their RADIUS reply attributes)")
    new_by_name = {g.name: g for g in new.groups}
    groups = tuple(
        dataclasses.replace(g, **{f: getattr(new_by_name[g.name], f) for f in REPLY_FIELDS})
        if g.name in new_by_name else g
        for g in old.groups)
    return dataclasses.replace(old, groups=groups), {g.name: reply_of(g) for g in groups}, restart


def reload(runtime: Runtime) -> list[str]:
    """Re-read ``runtime.settings.path``; returns the groups whose sessions get a CoA."""
    path = runtime.settings.path
    try:
        new = load_settings(path)
    except ConfigError as exc:
        log.error("config reload of %s refused, the running settings stay: %s", path,
                  str(exc).replace("\n", " "))
        return []
    settings, replies, restart = plan_reload(runtime.settings, new)
    before = runtime.groups.replies()
    runtime.groups.replace_replies(replies)
    runtime.settings = settings
    moved = dynamic_auth.changed_groups(before, runtime.groups.replies())
    if restart:
        log.warning("config reload: %s changed; that takes a restart", ", ".join(restart))
    log.info("config reloaded from %s: reply attributes changed for %s", path,
             ", ".join(moved) or "no group")
    return moved


def on_reload(runtime: Runtime) -> None:
    """The SIGHUP hook: reload, then CoA the sessions of the groups that changed."""
    moved = reload(runtime)
    tracker = runtime.services.get("sessions")
    if moved and tracker is not None:
        _spawn(runtime, tracker.reauthorize_groups(moved))


def _spawn(runtime: Runtime, coro: Coroutine[Any, Any, None]) -> None:
    tasks: set[asyncio.Task[None]] = runtime.services.setdefault("reload_tasks", set())

    async def guarded() -> None:
        try:
            await coro
        except Exception:
            log.exception("CoA after the config reload failed")

    task = asyncio.get_running_loop().create_task(guarded())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
