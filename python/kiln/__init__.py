"""Kiln's Python client.

    import kiln
    with kiln.Client("http://localhost:7070") as client:
        client.push("engagements", [{"user_id": 1, "post_id": 7, "kind": "view", "ts": datetime.now(UTC)}])
        online = client.get_online_features(service="user_profile", entities={"user": [1]})
        online.to_df()["user"]

The calls: :meth:`Client.get_online_features`, :meth:`Client.push`,
:meth:`Client.get_historical_features`, :meth:`Client.list_features` and
:meth:`Client.describe`. Errors are :class:`KilnError` and its kinds
:class:`BadRequest`, :class:`Unauthorized`, :class:`Forbidden`,
:class:`Overloaded` and :class:`Unavailable`.
"""

from .client import Client, FeatureInfo, OnlineFeatures, PushResult
from .errors import BadRequest, Forbidden, KilnError, Overloaded, Unauthorized, Unavailable

__all__ = [
    "BadRequest",
    "Client",
    "FeatureInfo",
    "Forbidden",
    "KilnError",
    "OnlineFeatures",
    "Overloaded",
    "PushResult",
    "Unauthorized",
    "Unavailable",
]
__version__ = "0.1.0"
