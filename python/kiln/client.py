"""The client of Kiln's HTTP API."""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
import ssl
import time
from dataclasses import dataclass, field as _field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from ._http import ConnectionFailed, Pool, Response
from .errors import BadRequest, Forbidden, KilnError, Overloaded, Unauthorized, Unavailable

if TYPE_CHECKING:  # pandas is optional
    import pandas

# The server's limits (docs/api.md).
MAX_PUSH_EVENTS = 10_000
MAX_PUSH_BYTES = 16 << 20
MAX_SPINE_ROWS = 100_000
MAX_SPINE_BYTES = 64 << 20
# Room left in a body for what surrounds its events or rows.
_ENVELOPE_BYTES = 4096


@dataclass(frozen=True)
class PushResult:
    """What a push did: events at least one view took (``accepted``:
    durable and applied), events every view of the source passed over as
    older than all its windows (``dropped_late``, still archived), and per
    view the events it passed over as late (``late_by_view``, views that
    passed over none left out). ``batches`` is the number of requests the
    events took."""

    accepted: int
    dropped_late: int
    batches: int
    late_by_view: dict[str, int] = _field(default_factory=dict)


@dataclass(frozen=True)
class FeatureInfo:
    """One served value: its name (``view:feature_window``), the type of its
    values (int64, float64, string or bool), and where it comes from."""

    name: str
    type: str
    view: str
    entity: str
    feature: str
    agg: str
    window: str  # as the project file spells it; "" for all time


class OnlineFeatures:
    """The answer to :meth:`Client.get_online_features`: per entity type,
    one entry per requested key in request order, each with the key, its
    ``status`` (``present`` or ``not_found``), its ``event_time`` (the
    newest event folded into its rows, RFC 3339, or None) and its
    feature values by served name."""

    def __init__(self, answer: Mapping[str, Any]) -> None:
        self._entities: dict[str, list[dict[str, Any]]] = dict(answer.get("entities", {}))

    @property
    def entities(self) -> list[str]:
        """The entity types of the answer, in the server's order."""
        return list(self._entities)

    def __getitem__(self, entity: str) -> list[dict[str, Any]]:
        return self._entities[entity]

    def statuses(self, entity: str) -> list[str]:
        """The status of each key of the entity type, in request order."""
        return [e["status"] for e in self._entities[entity]]

    def event_times(self, entity: str) -> list[_dt.datetime | None]:
        """The event time of each key of the entity type (UTC), None where
        the key was not found."""
        return [_parse_time(e["event_time"]) for e in self._entities[entity]]

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The answer as plain data: {entity: [{"key": {...}, "status": ...,
        "event_time": ..., "features": {name: value}}, ...]}."""
        return {name: [dict(e, key=dict(e["key"]), features=dict(e["features"])) for e in entries]
                for name, entries in self._entities.items()}

    def to_df(self) -> dict[str, "pandas.DataFrame"]:
        """One DataFrame per entity type: the key fields, one column per
        feature (served names), then ``status`` and ``event_time`` (a UTC
        datetime, NaT where not found). Needs pandas."""
        pd = _pandas()
        frames = {}
        for name, entries in self._entities.items():
            records = []
            for e in entries:
                rec = dict(e["key"])
                rec.update(e["features"])
                rec["status"] = e["status"]
                rec["event_time"] = e["event_time"]
                records.append(rec)
            df = pd.DataFrame.from_records(records)
            df["event_time"] = pd.to_datetime(df["event_time"], utc=True)
            frames[name] = df
        return frames

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in self._entities.items())
        return f"OnlineFeatures({sizes})"


class Client:
    """A client of one Kiln server's HTTP API.

    ``url`` is the server's address (``http://localhost:7070``, or
    ``https://`` for a server with TLS); ``token``, if given, is sent as a
    bearer token (for a server started with ``--token-file``, or a proxy in
    front of Kiln); ``timeout`` bounds each request in seconds.

    Over ``https://``, ``ca_file`` is the CA certificates (PEM) the
    server's certificate must chain to (default: the system's), and
    ``cert_file`` and ``key_file`` the client's certificate and key for a
    server that asks for one (``--client-ca``); or give an
    ``ssl_context`` of your own instead of the three. Reads that the server
    refuses for load (429) or cannot answer (503), or that get no answer,
    are retried ``retries`` times with exponential backoff from
    ``backoff`` seconds; a push is retried only when it certainly was not
    applied (a 429, or a connection that could not be made).

    The client keeps keep-alive connections open: use it as a context
    manager, or call :meth:`close`. It is safe to share between threads.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.1, max_backoff: float = 5.0, *,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/")
        if ssl_context is not None and (ca_file or cert_file or key_file):
            raise ValueError("give ssl_context, or ca_file, cert_file and key_file, not both")
        if bool(cert_file) != bool(key_file):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if ssl_context is None and (ca_file or cert_file):
            ssl_context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                ssl_context.load_cert_chain(cert_file, key_file)
        if ssl_context is not None and not self.url.startswith("https://"):
            raise ValueError(f"url {url!r}: TLS settings need an https:// url")
        self._pool = Pool(self.url, timeout, context=ssl_context)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": "kiln-python"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._metadata: dict[str, Any] | None = None

    def close(self) -> None:
        """Closes the client's idle connections."""
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------

    def get_online_features(self, *, service: str | None = None, features: Sequence[str] | None = None,
                            entities: Mapping[str, Iterable[Any]]) -> OnlineFeatures:
        """Reads features at the server's current time.

        Name a ``service`` of the project, or a list of served ``features``
        (``["user_engagement:views_1h", ...]``). ``entities`` gives, for
        each entity type the features are about, its keys: key objects
        (``{"user": [{"user_id": 1}]}``), or bare values for an entity with
        one key field (``{"user": [1, 2]}``).
        """
        body = _selection(service, features)
        body["entities"] = {name: self._keys(name, keys) for name, keys in entities.items()}
        return OnlineFeatures(self._json("POST", "/v1/features", body, retry=True))

    def describe(self) -> dict[str, Any]:
        """The project the server serves (GET /v1/metadata): entities with
        their key types, sources with their fields, views with their
        features, served values and tile plans, services with their served
        names."""
        self._metadata = self._json("GET", "/v1/metadata", None, retry=True)
        return self._metadata

    def list_features(self) -> list[FeatureInfo]:
        """Every value the server serves, view by view."""
        meta = self.describe()
        return [FeatureInfo(name=s["name"], type=s["type"], view=v["name"], entity=v["entity"],
                            feature=s["feature"], agg=s["agg"], window=s["window"])
                for v in meta["views"] for s in v["served"]]

    def get_historical_features(self, spine: "pandas.DataFrame | Sequence[Mapping[str, Any]]", *,
                                service: str | None = None, features: Sequence[str] | None = None,
                                as_served: bool = False, time_column: str = "ts",
                                batch_rows: int = MAX_SPINE_ROWS) -> Any:
        """Point-in-time feature values for each row of a spine, from the
        server's event archive (POST /v1/training-set).

        ``spine`` is a DataFrame or a list of dicts; each row holds the key
        field of every entity the features are about and a time in
        ``time_column`` (a datetime, RFC 3339 or epoch milliseconds); other
        columns pass through. Values are those ``/v1/features`` would have
        answered at each row's time had every event arrived by then, or,
        with ``as_served=True``, those it did answer then. Returns the
        spine with one column per served name added: a DataFrame for a
        DataFrame, a list of dicts for a list. Spines over ``batch_rows``
        rows (or the server's body limit) are sent in several requests.
        """
        if not 0 < batch_rows <= MAX_SPINE_ROWS:
            raise ValueError(f"batch_rows must be from 1 to {MAX_SPINE_ROWS}")
        selection = _selection(service, features)
        frame = _is_frame(spine)
        rows = _frame_records(spine) if frame else [_plain_record(r, i) for i, r in enumerate(spine)]
        encoded = [_encode(r, i) for i, r in enumerate(rows)]
        head = dict(selection, as_served=as_served, time_column=time_column)
        added: list[dict[str, Any]] = []
        for lo, hi in _batches(encoded, batch_rows, MAX_SPINE_BYTES):
            body = _body_with(head, "spine", encoded[lo:hi])
            try:
                answer = self._request_json("POST", "/v1/training-set", body, retry=True)
            except KilnError as e:
                _shift_details(e, lo)
                raise
            for sent, got in zip(rows[lo:hi], answer["rows"]):
                added.append({k: v for k, v in got.items() if k not in sent})
        if frame:
            pd = _pandas()
            values = pd.DataFrame.from_records(added, index=spine.index) if added else pd.DataFrame(index=spine.index)
            return pd.concat([spine, values], axis=1)
        return [dict(r, **a) for r, a in zip(spine, added)]

    # -- writes --------------------------------------------------------------

    def push(self, source: str, events: "pandas.DataFrame | Iterable[Mapping[str, Any]]") -> PushResult:
        """Pushes events of a push source: a list of dicts or a DataFrame,
        one event per row, with the source's fields and its event-time
        field (a datetime, RFC 3339 or epoch milliseconds; a datetime
        without a zone is UTC). Nulls (None, NaN, NaT) are fields left out.

        The events are split into requests under the server's limits
        (10,000 events, 16 MiB); each is answered once its events are
        durable. All events are encoded before the first request, so an
        event that cannot be sent changes nothing. If a request fails, the
        error's ``accepted`` counts the events of the requests before it,
        which were applied; the events of the failed request may have been
        applied in part (a 503) and are not retried.
        """
        if _is_frame(events):
            records = _frame_records(events)
        else:
            records = [_plain_record(e, i) for i, e in enumerate(events)]
        encoded = [_encode(r, i) for i, r in enumerate(records)]
        for i, b in enumerate(encoded):
            if len(b) > MAX_PUSH_BYTES - _ENVELOPE_BYTES:
                raise BadRequest(f"event {i} is {len(b)} bytes, over the server's {MAX_PUSH_BYTES}-byte limit of a push; nothing was sent")
        accepted = dropped = batches = 0
        late: dict[str, int] = {}
        head = {"source": source}
        for lo, hi in _batches(encoded, MAX_PUSH_EVENTS, MAX_PUSH_BYTES):
            try:
                answer = self._request_json("POST", "/v1/push", _body_with(head, "events", encoded[lo:hi]), retry=False)
            except KilnError as e:
                e.accepted = accepted
                _shift_details(e, lo)
                raise
            accepted += answer["accepted"]
            dropped += answer["dropped_late"]
            for view, n in answer.get("late_by_view", {}).items():
                late[view] = late.get(view, 0) + n
            batches += 1
        return PushResult(accepted=accepted, dropped_late=dropped, batches=batches, late_by_view=late)

    # -- plumbing ------------------------------------------------------------

    def _keys(self, entity: str, keys: Iterable[Any]) -> list[Any]:
        out = list(keys)
        if any(not isinstance(k, Mapping) for k in out):
            field = self._key_field(entity)
            out = [k if isinstance(k, Mapping) else {field: _plain(k)} for k in out]
        return [dict(k) for k in out]

    def _key_field(self, entity: str) -> str:
        meta = self._metadata or self.describe()
        for e in meta["entities"]:
            if e["name"] == entity:
                if len(e["keys"]) != 1:
                    names = ", ".join(k["name"] for k in e["keys"])
                    raise ValueError(f"entity {entity} has several key fields ({names}): give each key as a dict")
                return e["keys"][0]["name"]
        raise ValueError(f"entity {entity!r} is not defined (entities: {', '.join(e['name'] for e in meta['entities'])})")

    def _json(self, method: str, path: str, body: Any, retry: bool) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        return self._request_json(method, path, data, retry)

    def _request_json(self, method: str, path: str, data: bytes | None, retry: bool) -> Any:
        resp = self._send(method, path, data, retry)
        try:
            return json.loads(resp.body)
        except ValueError as e:
            raise KilnError(f"{method} {path}: the answer is not JSON: {resp.body[:200]!r}", resp.status) from e

    def _send(self, method: str, path: str, data: bytes | None, retry: bool) -> Response:
        """Sends a request, retrying what is safe to retry: anything whose
        connection could not be made or that got a 429, and with ``retry``
        (reads) a 503 or a lost answer too."""
        attempt = 0
        while True:
            wait = self.backoff * (2 ** attempt)
            try:
                resp = self._pool.request(method, path, data, self._headers)
            except ConnectionFailed as e:
                if attempt < self.retries and (retry or not e.sent):
                    self._sleep(wait, attempt)
                    attempt += 1
                    continue
                raise Unavailable(str(e)) from e
            if resp.status < 300:
                return resp
            err = _error(method, path, resp)
            again = isinstance(err, Overloaded) or (retry and isinstance(err, Unavailable))
            if again and attempt < self.retries:
                if isinstance(err, Overloaded):
                    wait = max(wait, err.retry_after)
                self._sleep(wait, attempt)
                attempt += 1
                continue
            raise err

    def _sleep(self, wait: float, attempt: int) -> None:
        # Full jitter keeps clients that failed together from retrying
        # together.
        time.sleep(min(self.max_backoff, wait) * (0.5 + random.random() / 2))


def _error(method: str, path: str, resp: Response) -> KilnError:
    """The exception of an error answer, with the server's message."""
    message, details = f"{method} {path}: HTTP {resp.status}", []
    try:
        body = json.loads(resp.body)
        message = body.get("error") or message
        details = body.get("details") or []
    except (ValueError, AttributeError):
        if resp.body:
            message += ": " + resp.body[:200].decode("utf-8", "replace")
    if resp.status in (400, 413):
        return BadRequest(message, resp.status, details)
    if resp.status == 401:
        return Unauthorized(message, resp.status, details)
    if resp.status == 403:
        return Forbidden(message, resp.status, details)
    if resp.status == 429:
        try:
            retry_after = float(resp.headers.get("retry-after", "1"))
        except ValueError:
            retry_after = 1.0
        return Overloaded(message, resp.status, details, retry_after=retry_after)
    if resp.status in (502, 503, 504):
        return Unavailable(message, resp.status, details)
    return KilnError(message, resp.status, details)


def _selection(service: str | None, features: Sequence[str] | None) -> dict[str, Any]:
    if (service is None) == (features is None):
        raise ValueError("name a service or a list of features, not both and not neither")
    if service is not None:
        return {"service": service}
    if isinstance(features, str):
        raise ValueError('features is a list of served names, like ["user_engagement:views_1h"]')
    return {"features": list(features)}


def _shift_details(e: KilnError, offset: int) -> None:
    """Makes the indexes of a batch's problems those of the whole list."""
    for d in e.details:
        if isinstance(d.get("index"), int):
            d["index"] += offset


def _batches(encoded: Sequence[bytes], max_items: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """Splits encoded items into runs [lo, hi) of at most max_items whose
    body stays under max_bytes."""
    lo, size = 0, 0
    for i, b in enumerate(encoded):
        if i > lo and (i - lo >= max_items or size + len(b) + 1 > max_bytes - _ENVELOPE_BYTES):
            yield lo, i
            lo, size = i, 0
        size += len(b) + 1
    if lo < len(encoded):
        yield lo, len(encoded)


def _body_with(head: Mapping[str, Any], member: str, items: Sequence[bytes]) -> bytes:
    """{...head, member: [items]} from items already encoded."""
    start = json.dumps(head, separators=(",", ":"))[:-1]
    return b"".join([start.encode(), b',"', member.encode(), b'":[', b",".join(items), b"]}"])


def _encode(record: Mapping[str, Any], index: int) -> bytes:
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise BadRequest(f"row {index}: {e}; nothing was sent", details=[{"index": index, "message": str(e)}]) from e


def _plain_record(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise BadRequest(f"row {index} is a {type(record).__name__}, not a dict; nothing was sent",
                         details=[{"index": index, "message": "not a dict"}])
    out = {}
    for k, v in record.items():
        v = _plain(v)
        if v is not None:
            out[k] = v
    return out


def _plain(v: Any) -> Any:
    """A value as JSON can carry it: datetimes as epoch milliseconds, numpy
    scalars as Python's, and NaN, NaT and None as None (left out)."""
    if v is None:
        return None
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        nanos = getattr(v, "value", None)  # a pandas Timestamp keeps nanoseconds
        if isinstance(nanos, int) and type(v).__name__ == "Timestamp":
            return nanos // 1_000_000
        return (v - _EPOCH) // _dt.timedelta(milliseconds=1)
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, (str, int, bool)):
        return v
    if type(v).__name__ in ("NaTType", "NAType"):
        return None
    item = getattr(v, "item", None)  # a numpy scalar
    if callable(item):
        return _plain(item())
    return v


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_dict")


def _frame_records(df: "pandas.DataFrame") -> list[dict[str, Any]]:
    """A DataFrame's rows as JSON-ready dicts; datetime columns become epoch
    milliseconds (naive ones are UTC), nulls are left out."""
    pd = _pandas()
    cols = {}
    for name in df.columns:
        s = df[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            if getattr(s.dt, "tz", None) is None:
                s = s.dt.tz_localize("UTC")
            ms = (s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
            cols[str(name)] = [None if pd.isna(t) else int(m) for t, m in zip(s, ms.fillna(0))]
        else:
            cols[str(name)] = [_plain(v) for v in s.tolist()]
    names = list(cols)
    out = []
    for i in range(len(df)):
        rec = {}
        for n in names:
            v = cols[n][i]
            if v is not None:
                rec[n] = v
        out.append(rec)
    return out


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:
        raise ImportError("this needs pandas: install it (Debian: apt-get install python3-pandas)") from e
    return pandas


def _parse_time(s: str | None) -> _dt.datetime | None:
    if s is None:
        return None
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
