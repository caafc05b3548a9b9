"""The control API under ``/_sim/``: any test suite, in any language, drives the simulator.

Requests to it are not recorded, counted, delayed or faulted.  Answers are
JSON; a bad request gets HTTP 400 and ``{"error": "..."}``.  Every request
but GET must say ``Content-Type: application/json`` (a cross-site form or
``text/plain`` POST from a browser page cannot), and its Host header must
name the address the simulator listens on or a loopback name (a
DNS-rebinding page cannot read it): others get HTTP 403.  See
docs/simulator.md for every endpoint with curl examples.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .faults import Fault, NetworkDelay
from .fixtures import Fixture
from .limits import EndpointLimit, LimitValue, window_of
from .protocol import CONTROL_PREFIX
from .stream import control_endpoints

if TYPE_CHECKING:
    from .server import BybitSimulator

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    pass


def control_handler(sim: BybitSimulator) -> _Handler:
    """Return the aiohttp handler that serves *sim*'s control API."""

    async def handle(request: web.Request) -> web.StreamResponse:
        refused = _refuse(sim, request)
        if refused is not None:
            return _json({"error": refused}, 403)
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        endpoint = _ENDPOINTS.get((request.method, name))
        if endpoint is None:
            known = sorted({n for _, n in _ENDPOINTS})
            if any(n == name for _, n in _ENDPOINTS):
                return _json({"error": f"method {request.method} not allowed"}, 405)
            return _json({"error": f"no control endpoint {name!r}", "endpoints": known}, 404)
        try:
            data: Any = None
            if request.method in ("POST", "PATCH", "PUT", "DELETE"):
                raw = await request.read()
                data = orjson.loads(raw) if raw.strip() else {}
                if not isinstance(data, dict):
                    raise _BadRequest("the body must be a JSON object")
            return _json(endpoint(sim, request, data))
        except (_BadRequest, ValueError, TypeError, KeyError) as exc:
            return _json({"error": str(exc) or type(exc).__name__}, 400)

    return handle


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _refuse(sim: BybitSimulator, request: web.Request) -> str | None:
    """Why a control request is refused (wrong Host, not JSON), or None."""
    host_header = request.headers.get("Host", "")
    host, port = _split_host(host_header)
    listening = sim.host.strip("[]").lower()
    allowed = host in _LOOPBACK_NAMES or host == listening
    if not allowed and listening in _WILDCARDS:
        # Listening on every address: any address literal names it; a name could be a
        # DNS-rebinding page's.
        allowed = _is_ip(host)
    if not allowed or (port is not None and port != str(sim.port_number)):
        return f"Host {host_header!r} is not the simulator's address or a loopback name"
    if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
        return "the control API takes JSON only: send Content-Type: application/json"
    return None


def _split_host(value: str) -> tuple[str, str | None]:
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, None


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _index(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    return {
        "url": sim.url,
        "endpoints": sorted(f"{method} {CONTROL_PREFIX}{name}" for method, name in _ENDPOINTS),
    }


def _requests(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    query = request.query
    since = int(query.get("since", "0"))
    path = query.get("path")
    ret_code = query.get("retCode")
    status = query.get("status")
    records = sim.requests[since:]
    out = [
        r.to_json()
        for r in records
        if (path is None or r.path == path)
        and (ret_code is None or str(r.ret_code) == ret_code)
        and (status is None or str(r.status) == status)
    ]
    return {"requests": out, "next": since + len(records)}


def _clear_requests(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    sim.requests.clear()
    return {"ok": True}


def _counters(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    by_path: dict[str, dict[str, Any]] = {}
    for r in sim.requests:
        entry = by_path.setdefault(r.path, {"total": 0, "byStatus": {}, "byRetCode": {}})
        entry["total"] += 1
        entry["byStatus"][str(r.status)] = entry["byStatus"].get(str(r.status), 0) + 1
        if r.ret_code is not None:
            code = str(r.ret_code)
            entry["byRetCode"][code] = entry["byRetCode"].get(code, 0) + 1
    for path, entry in by_path.items():
        entry["maxInWindow"] = sim.max_in_window(path, 1.0)
    return {"total": len(sim.requests), "byPath": by_path}


def _reset(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    sim.reset()
    return {"ok": True}


def _reset_limits(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    sim.reset_limits()
    return {"ok": True}


def _faults(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    return {
        "faults": [
            {"fault": fault.to_json(), "path": path, "times": times}
            for fault, path, times in sim.faults
        ]
    }


def _inject(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    spec = data.get("fault", data)
    if not isinstance(spec, dict):
        raise _BadRequest("fault must be a JSON object")
    fault = Fault.from_json(spec)
    path = data.get("path")
    if path is not None and not isinstance(path, str):
        raise _BadRequest("path must be a string or null")
    sim.inject(fault, path=path, times=int(data.get("times", 1)))
    return _faults(sim, request, None)


def _clear_faults(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    sim.clear_faults()
    return {"ok": True}


def _positions(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    api_key = request.query.get("apiKey")
    return {
        "uid": sim.uid(api_key),
        "positions": [p.to_json() for p in sim.positions(api_key=api_key)],
    }


def _set_position(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    symbol = data.get("symbol")
    if not isinstance(symbol, str):
        raise _BadRequest("symbol is required")
    hedge = data.get("hedge")
    sim.set_position(
        symbol,
        api_key=data.get("apiKey"),
        margin_mode=data.get("marginMode"),
        hedge=None if hedge is None else bool(hedge),
        auto_add_margin=data.get("autoAddMargin"),
        size=data.get("size"),
        side=data.get("side"),
        position_idx=data.get("positionIdx"),
    )
    return {"positions": [p.to_json() for p in sim.positions(api_key=data.get("apiKey"))]}


def _accounts(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    return {"accounts": [{"apiKey": key, "uid": uid} for key, uid in sim.api_keys().items()]}


def _add_account(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    api_key = data.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise _BadRequest("apiKey is required")
    uid = sim.add_account(
        api_key,
        data.get("apiSecret"),
        rsa_public_key=data.get("rsaPublicKey"),
        margin_mode=data.get("marginMode", "isolated"),
        uid=data.get("uid"),
        account_type=data.get("accountType", "unified"),
    )
    return {"apiKey": api_key, "uid": uid}


def settings_json(sim: BybitSimulator) -> dict[str, Any]:
    """The run-time settings as the control API shows them."""
    delay = sim.network_delay
    return {
        "enforceLimits": sim.enforce_limits,
        "ipLimit": sim.ip_limit,
        "ipWindow": sim.ip_window,
        "ipBanSeconds": sim.ip_ban_seconds,
        "endpointLimits": {key: limit_json(key, v) for key, v in sim.endpoint_limits.items()},
        "clockOffsetMs": sim.clock_offset_ms,
        "networkDelay": None
        if delay is None
        else {
            "low": delay.low,
            "high": delay.high,
            "spikeProbability": delay.spike_probability,
            "spike": delay.spike,
            "seed": delay.seed,
        },
        "successMessages": None if sim.success_messages is None else list(sim.success_messages),
        "instruments": None if sim.instruments.any else sorted(sim.instruments.symbols),
    }


def _settings(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    return settings_json(sim)


def _change_settings(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    unknown = set(data) - set(settings_json(sim)) - {"addInstruments"}
    if unknown:
        raise _BadRequest(f"unknown settings: {', '.join(sorted(unknown))}")
    # Check everything before changing anything.
    changes: dict[str, Any] = {}
    if "enforceLimits" in data:
        changes["enforce_limits"] = _bool(data["enforceLimits"], "enforceLimits")
    for name, attr in (("ipLimit", "ip_limit"), ("clockOffsetMs", "clock_offset_ms")):
        if name in data:
            changes[attr] = _int(data[name], name)
    for name, attr in (("ipWindow", "ip_window"), ("ipBanSeconds", "ip_ban_seconds")):
        if name in data:
            changes[attr] = float(data[name])
    if "endpointLimits" in data:
        limits = data["endpointLimits"]
        if not isinstance(limits, dict):
            raise _BadRequest("endpointLimits must be an object of path: limit")
        changes["endpoint_limits"] = {
            **sim.endpoint_limits,
            **{str(p): limit_from_json(str(p), n) for p, n in limits.items()},
        }
    if "networkDelay" in data:
        changes["network_delay"] = network_delay_from_json(data["networkDelay"])
    if "successMessages" in data:
        messages = data["successMessages"]
        if messages is not None and not (
            isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        ):
            raise _BadRequest("successMessages must be a list of strings or null")
        changes["success_messages"] = None if messages is None else tuple(messages)
    if "instruments" in data or "addInstruments" in data:
        raise _BadRequest("instruments are set at start; add more with POST /_sim/instruments")
    for attr, value in changes.items():
        setattr(sim, attr, value)
    return settings_json(sim)


def _set_balances(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    balances = data.get("balances")
    if not isinstance(balances, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in balances.values()
    ):
        raise _BadRequest('give "balances": {coin: amount}, amounts as decimal strings')
    api_key = data.get("apiKey")
    for coin, amount in balances.items():
        sim.set_balance(str(coin), amount, api_key=api_key)
    return {"balances": sim.balances(api_key=api_key)}


def _set_prices(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    prices = data.get("prices")
    if not isinstance(prices, dict):
        raise _BadRequest('give "prices": {symbol: price}')
    for symbol, price in prices.items():
        sim.set_price(str(symbol), price)
    return {"prices": dict(sim.instruments.prices)}


def _add_instruments(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    symbols = data.get("symbols")
    if not isinstance(symbols, list | dict):
        raise _BadRequest("symbols must be a list of symbols or an object of symbol: settleCoin")
    sim.add_instruments(symbols)
    return {"instruments": None if sim.instruments.any else sorted(sim.instruments.symbols)}


def limit_json(key: str, value: LimitValue) -> Any:
    """A limit as JSON: an int when it counts per the key's usual window, else an object."""
    if isinstance(value, EndpointLimit):
        if value.window == window_of(key):
            return value.limit
        return {"limit": value.limit, "window": value.window}
    return value


def limit_from_json(key: str, spec: Any) -> LimitValue:
    """A limit from JSON: N, or ``{"limit": N, "window": seconds}``."""
    if isinstance(spec, dict):
        if set(spec) - {"limit", "window"} or "limit" not in spec:
            raise _BadRequest(f"the limit of {key} takes limit and window")
        window = spec.get("window")
        number = _int(spec["limit"], key)
        if window is None:
            return EndpointLimit(number, window_of(key))
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise _BadRequest(f"the window of {key} must be a number of seconds")
        return EndpointLimit(number, float(window))
    return _int(spec, key)


def _account_of(data: Any, query: Any) -> dict[str, Any]:
    uid = data.get("uid") if data else query.get("uid")
    api_key = data.get("apiKey") if data else query.get("apiKey")
    if uid is not None and not isinstance(uid, str | int):
        raise _BadRequest("uid must be a string of digits")
    if api_key is not None and not isinstance(api_key, str):
        raise _BadRequest("apiKey must be a string")
    return {"uid": uid, "api_key": api_key}


def _limits(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    account = _account_of(None, request.query)
    uid = account["uid"] if account["uid"] is not None else sim.uid(account["api_key"])
    own = sim.limits(uid=uid)
    return {"uid": str(uid), "limits": {key: limit_json(key, v) for key, v in own.items()}}


def _set_limits(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    account = _account_of(data, None)
    limits = data.get("limits")
    if limits is None and "path" in data:
        limits = {data["path"]: data.get("limit")}
    if not isinstance(limits, dict) or not limits:
        raise _BadRequest('give "limits": {key: N or {"limit": N, "window": S} or null}')
    parsed = {
        str(key): None if spec is None else limit_from_json(str(key), spec)
        for key, spec in limits.items()
    }
    for key, limit in parsed.items():
        sim.set_limit(key, limit, **account)
    uid = account["uid"] if account["uid"] is not None else sim.uid(account["api_key"])
    own = sim.limits(uid=uid)
    return {"uid": str(uid), "limits": {key: limit_json(key, v) for key, v in own.items()}}


def _routes(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    return {"routes": [fixture.to_json() for fixture in sim.routes]}


def _add_routes(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    specs = data.get("routes", [data])
    if not isinstance(specs, list):
        raise _BadRequest("routes must be a list of route objects")
    # Check them all before adding any.
    fixtures = [Fixture.from_json(spec) for spec in specs]
    for fixture in fixtures:
        sim.add_route(
            fixture.method,
            fixture.path,
            fixture.result,
            ret_code=fixture.ret_code,
            ret_msg=fixture.ret_msg,
        )
    return _routes(sim, request, None)


def _remove_route(sim: BybitSimulator, request: web.Request, data: Any) -> Any:
    method = str(data.get("method", "GET"))
    path = data.get("path")
    if not isinstance(path, str):
        raise _BadRequest("path is required")
    sim.remove_route(method, path)
    return _routes(sim, request, None)


def network_delay_from_json(spec: Any) -> NetworkDelay | None:
    """A `NetworkDelay` from JSON: low, high, spikeProbability, spike (seconds) and seed."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _BadRequest("networkDelay must be an object or null")
    names = {"low", "high", "spikeProbability", "spike", "seed"}
    if set(spec) - names:
        raise _BadRequest(f"networkDelay takes {', '.join(sorted(names))}")
    low = float(spec.get("low", 0.0))
    seed = spec.get("seed")
    return NetworkDelay(
        low=low,
        high=float(spec.get("high", low)),
        spike_probability=float(spec.get("spikeProbability", 0.0)),
        spike=float(spec.get("spike", 0.0)),
        seed=None if seed is None else _int(seed, "seed"),
    )


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _BadRequest(f"{name} must be true or false")
    return value


def _int(value: Any, name: str) -> int:
    if type(value) is not int:
        raise _BadRequest(f"{name} must be an integer")
    return value


_Endpoint = Callable[["BybitSimulator", web.Request, Any], Any]

#: (method, name under /_sim/) -> handler.
_ENDPOINTS: dict[tuple[str, str], _Endpoint] = {
    ("GET", ""): _index,
    ("GET", "requests"): _requests,
    ("DELETE", "requests"): _clear_requests,
    ("GET", "counters"): _counters,
    ("POST", "reset"): _reset,
    ("POST", "limits/reset"): _reset_limits,
    ("GET", "faults"): _faults,
    ("POST", "faults"): _inject,
    ("DELETE", "faults"): _clear_faults,
    ("GET", "positions"): _positions,
    ("POST", "positions"): _set_position,
    ("GET", "accounts"): _accounts,
    ("POST", "accounts"): _add_account,
    ("GET", "settings"): _settings,
    ("PATCH", "settings"): _change_settings,
    ("POST", "instruments"): _add_instruments,
    ("POST", "balances"): _set_balances,
    ("POST", "prices"): _set_prices,
    ("GET", "limits"): _limits,
    ("POST", "limits"): _set_limits,
    ("GET", "routes"): _routes,
    ("POST", "routes"): _add_routes,
    ("DELETE", "routes"): _remove_route,
    **control_endpoints(),
}
