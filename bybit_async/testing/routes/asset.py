"""Asset endpoints: the coins the simulator knows."""

from __future__ import annotations

from typing import Any

from ..protocol import base_coin
from .common import Call, Handler, Outcome, ok

COIN_INFO_PATH = "/v5/asset/coin/query-info"


def _chain(coin: str) -> dict[str, Any]:
    chain = {"USDT": "ETH", "USDC": "ETH"}.get(coin, coin)
    return {
        "chainType": chain,
        "confirmation": "12",
        "withdrawFee": "1" if coin in ("USDT", "USDC") else "0.001",
        "depositMin": "0",
        "withdrawMin": "2" if coin in ("USDT", "USDC") else "0.001",
        "chain": chain,
        "chainDeposit": "1",
        "chainWithdraw": "1",
        "minAccuracy": "8",
        "withdrawPercentageFee": "0",
        "contractAddress": "",
        "safeConfirmNumber": "6",
    }


def coin_info(call: Call) -> Outcome:
    """``GET /v5/asset/coin/query-info``: the settle and base coins of the instruments."""
    instruments = call.sim.instruments
    coins = {"USDT", "USDC"} | {base_coin(symbol) for symbol in instruments.symbols}
    coins |= set(call.account.balances)
    wanted = call.params.get("coin")
    if wanted:
        coins &= {str(wanted)}
    rows = [
        {"name": coin, "coin": coin, "remainAmount": "1000000", "chains": [_chain(coin)]}
        for coin in sorted(coins)
    ]
    return ok({"rows": rows})


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", COIN_INFO_PATH): coin_info,
}
