"""Trace ids: what a user sees is ``tr_`` + 32 hex digits; the database keeps the UUID.

The same id appears in the ``aqta`` object, the ``X-Aqta-Trace-Id`` and ``x-request-id``
headers, logs, the analytics API, the dashboard and the admin, and every lookup accepts
it in that form, as a bare UUID, or as the 32 hex digits alone.
"""

from __future__ import annotations

import itertools
import os
import uuid

PREFIX = "tr_"


def public(value: uuid.UUID | str) -> str:
    """``tr_<hex>`` for a UUID, its string, or the 32 hex digits."""
    if isinstance(value, uuid.UUID):
        return PREFIX + value.hex
    return value if value.startswith(PREFIX) else PREFIX + uuid.UUID(value).hex


def parse(value: object) -> uuid.UUID | None:
    """The UUID of a trace id in any accepted spelling; None if it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[:3].lower() == PREFIX:
        text = text[3:]
    if len(text) not in (32, 36):  # uuid.UUID also takes braces and urn: forms
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class TraceIds:
    """Trace ids without a system call per request: 80 random bits per process plus a
    counter, as 32 hex digits (a valid UUID value, unique across workers and hosts)."""

    def __init__(self) -> None:
        self.reset()
        # A forked worker (e.g. a server that preloads the app) needs its own prefix.
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = PREFIX + os.urandom(10).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        """A new public id (``tr_`` + 32 hex digits)."""
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"
