"""User endpoints: what the API key itself may do."""

from __future__ import annotations

import zlib

from .common import Call, Handler, Outcome, ok

QUERY_API_PATH = "/v5/user/query-api"


def query_api(call: Call) -> Outcome:
    """``GET /v5/user/query-api``: the key's permissions and account, never its secret."""
    user = call.account
    unified = user.account_type == "unified"
    return ok(
        {
            "id": str(zlib.crc32((call.api_key or "").encode()) % 10**8),
            "note": "bybit-async simulator",
            "apiKey": call.api_key or "",
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": ["SpotTrade"],
                "Wallet": ["AccountTransfer", "SubMemberTransfer"],
                "Options": ["OptionsTrade"],
                "Derivatives": ["DerivativesTrade"],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
                "Earn": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -1,
            "expiredAt": "",
            "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1 if unified else 0,
            "userID": int(user.uid),
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT",
            "kycRegion": "",
        }
    )


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", QUERY_API_PATH): query_api,
}
