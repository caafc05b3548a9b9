"""Account endpoints."""

from __future__ import annotations

from . import Handler

ROUTES: dict[tuple[str, str], Handler] = {}
