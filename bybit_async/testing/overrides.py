"""What a test sets beyond accounts and positions: an account's own limits, fixture routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..endpoint_limits import EndpointLimit, budget_key
from .accounts import Accounts
from .fixtures import Fixture, Fixtures
from .limits import LimitValue, check_limit, lookup


class Overrides:
    """Per-account limits and fixture routes of the simulator."""

    api_key: str
    endpoint_limits: dict[str, LimitValue]
    _accounts: Accounts
    _uid_limits: dict[str, dict[str, LimitValue]]
    _fixtures: Fixtures

    def _uid_of(self, api_key: str | None) -> str:
        return self._accounts.user(self.api_key if api_key is None else api_key).uid

    # -- per-UID limits ------------------------------------------------------

    def set_limit(
        self,
        key: str,
        limit: int | EndpointLimit | None,
        *,
        uid: str | int | None = None,
        api_key: str | None = None,
    ) -> None:
        """Give one account its own per-UID limit for a budget key, as Bybit does by VIP level.

        *key* is a budget key (``/v5/order/create:linear+inverse``) or a
        path; a path of an endpoint limited per business line sets every
        line whose own key the account has not set.  *limit* is requests per
        the key's window (the table's; one second for a key it lacks), or an
        `EndpointLimit` with its own window; None removes the account's own
        limit.  The account is *uid*, or *api_key*'s, or the default key's.
        Answers report the limit in ``X-Bapi-Limit``; with limits enforced,
        a request over it gets retCode 10006.
        """
        if uid is not None and api_key is not None:
            raise ValueError("give uid or api_key, not both")
        if uid is not None:
            uid_text = str(uid)
            if not uid_text.isdigit():
                raise ValueError(f"uid must be digits, got {uid!r}")
        else:
            uid_text = self._uid_of(api_key)
        if limit is None:
            own = self._uid_limits.get(uid_text, {})
            own.pop(key, None)
            return
        self._uid_limits.setdefault(uid_text, {})[key] = check_limit(key, limit)

    def limits(self, *, uid: str | int | None = None, api_key: str | None = None) -> dict[str, Any]:
        """One account's own limits (see `set_limit`), by key, as set."""
        uid_text = str(uid) if uid is not None else self._uid_of(api_key)
        return dict(self._uid_limits.get(uid_text, {}))

    def limit_in_force(
        self, path: str, category: str | None = None, *, api_key: str | None = None
    ) -> EndpointLimit | None:
        """The limit a request to *path* with *category* meets from *api_key*'s account."""
        own = self._uid_limits.get(self._uid_of(api_key))
        return lookup(budget_key(path, category), own, self.endpoint_limits)

    # -- fixture routes --------------------------------------------------------

    def add_route(
        self,
        method: str,
        path: str,
        result: Mapping[str, Any] | None = None,
        *,
        ret_code: int = 0,
        ret_msg: str | None = None,
    ) -> None:
        """Answer *method* *path* (under ``/v5/``) with retCode *ret_code* and *result*.

        For paths the simulator does not model, such as ``/v5/order/realtime``;
        one for a path it models replaces the built-in answer.  The request is
        authenticated and counted against the IP and per-UID limits of its
        budget key first, as any other.  *ret_msg* None is ``OK`` for a
        success, Bybit's usual message for an error.  Added again, it
        replaces the old answer.
        """
        self._fixtures.add(Fixture(method.upper(), path, _json_object(result), ret_code, ret_msg))

    def remove_route(self, method: str, path: str) -> None:
        """Forget the fixture for *method* *path*; KeyError if there is none."""
        if not self._fixtures.remove(method.upper(), path):
            raise KeyError(f"no fixture route {method} {path}")

    @property
    def routes(self) -> list[Fixture]:
        """The fixture routes, in the order they were added."""
        return list(self._fixtures.routes.values())


def _json_object(result: object) -> Any:
    # A mapping becomes a dict; anything else goes to Fixture, which refuses it.
    if result is None:
        return {}
    return dict(result) if isinstance(result, Mapping) else result
