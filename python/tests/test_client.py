"""The client against a real kiln server of the feed example."""

from __future__ import annotations

import datetime as dt
import socket
import threading

import pytest

import kiln
from conftest import Server, require_pandas

UTC = dt.timezone.utc


def now() -> dt.datetime:
    # Whole milliseconds: Kiln keeps event times to the millisecond.
    t = dt.datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def ev(user: int, post: int, kind: str, dwell: float | None, ts: object) -> dict:
    e = {"user_id": user, "post_id": post, "kind": kind, "ts": ts}
    if dwell is not None:
        e["dwell_ms"] = dwell
    return e


@pytest.fixture
def client(server: Server):
    with kiln.Client(server.url, timeout=10) as c:
        yield c


def test_push_then_read(fresh_server: Server) -> None:
    t = now()
    with kiln.Client(fresh_server.url) as c:
        res = c.push("engagements", [
            ev(1, 7, "view", 1000.0, t - dt.timedelta(minutes=1)),              # a datetime
            ev(1, 8, "view", 3000.0, (t - dt.timedelta(minutes=2)).isoformat()),  # RFC 3339
            ev(1, 9, "like", None, int(t.timestamp() * 1000) - 180_000),         # epoch ms
        ])
        assert res == kiln.PushResult(accepted=3, dropped_late=0, batches=1)

        online = c.get_online_features(service="user_profile", entities={"user": [1, {"user_id": 2}]})
        assert online.entities == ["user"]
        assert online.statuses("user") == ["present", "not_found"]
        assert online.event_times("user") == [t - dt.timedelta(minutes=1), None]
        d = online.to_dict()
        u1 = d["user"][0]
        assert u1["key"] == {"user_id": 1}
        assert u1["features"]["user_engagement:views_1h"] == 2
        assert u1["features"]["user_engagement:likes_1h"] == 1
        assert u1["features"]["user_engagement:dwell_mean_24h"] == 2000.0
        assert u1["features"]["user_engagement:last_post"] == 7
        assert all(v is None for v in d["user"][1]["features"].values())
        # to_dict is a copy: changing it changes nothing of the result.
        u1["features"]["user_engagement:views_1h"] = -1
        assert online["user"][0]["features"]["user_engagement:views_1h"] == 2

        two = c.get_online_features(features=["post_engagement:views_1h", "user_engagement:views_1h"],
                                    entities={"user": [1], "post": [7, 8, 404]})
        assert [e["features"]["post_engagement:views_1h"] for e in two["post"]] == [1, 1, None]
        assert two["user"][0]["features"] == {"user_engagement:views_1h": 2}


def test_metadata(client: kiln.Client) -> None:
    meta = client.describe()
    assert meta["project"] == "feed"
    assert [e["name"] for e in meta["entities"]] == ["user", "post"]
    assert meta["entities"][0]["keys"] == [{"name": "user_id", "type": "int64"}]
    ranking = next(s for s in meta["services"] if s["name"] == "ranking")
    assert ranking["entities"] == ["user", "post"] and len(ranking["features"]) == 31

    features = client.list_features()
    assert len(features) == 31
    by_name = {f.name: f for f in features}
    assert by_name["user_engagement:views_1h"] == kiln.FeatureInfo(
        name="user_engagement:views_1h", type="int64", view="user_engagement", entity="user",
        feature="views", agg="count", window="1h")
    assert by_name["user_engagement:last_post"].window == ""
    assert by_name["post_engagement:dwell_mean_1h"].type == "float64"


def test_bad_requests(client: kiln.Client) -> None:
    with pytest.raises(kiln.BadRequest) as e:
        client.get_online_features(service="nope", entities={"user": [1]})
    assert e.value.status == 400
    assert e.value.message == 'service "nope" is not defined (defined: ranking, user_profile)'

    with pytest.raises(kiln.BadRequest) as e:
        client.get_online_features(service="user_profile", entities={"user": [{"user_id": "x"}, {"user_id": 1}, {}]})
    assert [(d["index"], d["field"]) for d in e.value.details] == [(0, "user_id"), (2, "user_id")]
    assert "2 invalid entity key(s)" in str(e.value)

    with pytest.raises(kiln.BadRequest) as e:
        client.push("engagements", [ev(1, 7, "view", 1.0, now()), {"user_id": 1, "post_id": 7, "kind": "view", "ts": now(), "nope": 1}])
    assert e.value.message == "1 invalid event(s); nothing was applied"
    assert {d["field"] for d in e.value.details} == {"nope"} and e.value.details[0]["index"] == 1

    with pytest.raises(kiln.KilnError) as e:
        client.push("nope", [ev(1, 7, "view", 1.0, now())])
    assert "source \"nope\" is not defined" in e.value.message

    with pytest.raises(ValueError):
        client.get_online_features(service="user_profile", features=["x"], entities={"user": [1]})
    with pytest.raises(ValueError, match="entity 'nobody' is not defined"):
        client.get_online_features(service="user_profile", entities={"nobody": [1]})
    # A value JSON cannot carry is refused before anything is sent.
    with pytest.raises(kiln.BadRequest, match="row 1"):
        client.push("engagements", [ev(1, 7, "view", 1.0, now()), ev(1, 7, "view", 1.0, object())])


def test_push_batches_and_a_failed_batch(fresh_server: Server) -> None:
    t = now()
    with kiln.Client(fresh_server.url) as c:
        # 25,000 events: three requests of at most 10,000.
        events = [ev(i % 100, 1, "view", 1.0, t - dt.timedelta(seconds=1)) for i in range(25_000)]
        res = c.push("engagements", events)
        assert res == kiln.PushResult(accepted=25_000, dropped_late=0, batches=3)
        got = c.get_online_features(features=["post_engagement:views_1h"], entities={"post": [1]})
        assert got["post"][0]["features"]["post_engagement:views_1h"] == 25_000

        # 9,000 events of 2 KB each: over 16 MiB, so two requests.
        big = [ev(1, 2, "x" * 2000, 1.0, t - dt.timedelta(seconds=1)) for _ in range(9_000)]
        assert c.push("engagements", big).batches == 2

        # A bad event in the second request: the first was applied, the
        # error says so and names the event by its index in the whole list.
        events = [ev(1, 3, "view", 1.0, t - dt.timedelta(seconds=1)) for _ in range(15_000)]
        events[12_000]["ts"] = "yesterday"
        with pytest.raises(kiln.BadRequest) as e:
            c.push("engagements", events)
        assert e.value.accepted == 10_000
        assert [d["index"] for d in e.value.details] == [12_000]
        got = c.get_online_features(features=["post_engagement:views_1h"], entities={"post": [3]})
        assert got["post"][0]["features"]["post_engagement:views_1h"] == 10_000


def test_unavailable_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now: every attempt is refused.
    with kiln.Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.001) as c:
        with pytest.raises(kiln.Unavailable, match="cannot connect"):
            c.describe()
        with pytest.raises(kiln.Unavailable):
            c.push("engagements", [ev(1, 7, "view", 1.0, now())])


def test_overloaded(kiln_binary, tmp_path) -> None:
    """A server that runs one read at once, and counts a queue standing
    above 1 ms for 20 ms as overload, refuses overlapping reads of 5,000
    keys with 429 once they queue: without retries the error says when to
    retry; with them, every read gets through."""
    s = Server(kiln_binary, tmp_path / "data", "--max-concurrent-reads", "1",
               "--admission-target", "1ms", "--admission-interval", "20ms")
    try:
        keys = {"post": list(range(5_000))}
        refused: list[kiln.Overloaded] = []
        failed: list[BaseException] = []

        def read(retries: int) -> None:
            with kiln.Client(s.url, retries=retries, backoff=0.001, max_backoff=0.01) as c:
                for _ in range(30):
                    try:
                        c.get_online_features(features=["post_engagement:views_1h"], entities=keys)
                    except kiln.Overloaded as e:
                        refused.append(e)
                    except BaseException as e:  # noqa: BLE001 - reported below
                        failed.append(e)

        threads = [threading.Thread(target=read, args=(0,)) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not failed
        assert refused, "no read was refused: the reads did not overlap"
        assert refused[0].status == 429 and refused[0].retry_after == 1.0
        assert "server at capacity" in refused[0].message

        refused.clear()
        threads = [threading.Thread(target=read, args=(200,)) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not failed and not refused
    finally:
        s.stop()


def test_dataframe_round_trip(fresh_server: Server) -> None:
    pd = require_pandas()
    t = pd.Timestamp.now(tz="UTC").floor("ms")
    df = pd.DataFrame({
        "user_id": [1, 1, 2],
        "post_id": [7, 8, 7],
        "kind": ["view", "view", "like"],
        "dwell_ms": [1000.0, float("nan"), None],
        # naive datetimes are UTC
        "ts": pd.to_datetime([t - pd.Timedelta(minutes=1), t - pd.Timedelta(minutes=2), t - pd.Timedelta(minutes=3)]).tz_localize(None),
    })
    assert df["user_id"].dtype == "int64" and str(df["ts"].dtype) == "datetime64[ns]"
    with kiln.Client(fresh_server.url) as c:
        assert c.push("engagements", df).accepted == 3
        # A tz-aware column, in another zone.
        later = pd.DataFrame({"user_id": [3], "post_id": [9], "kind": ["view"], "dwell_ms": [5.0],
                              "ts": [(t - pd.Timedelta(seconds=30)).tz_convert("America/New_York")]})
        assert c.push("engagements", later).accepted == 1

        frames = c.get_online_features(service="ranking", entities={"user": [1, 2, 3, 4], "post": [7, 9]}).to_df()
        users, posts = frames["user"], frames["post"]
        assert list(users.columns[:1]) == ["user_id"] and list(users.columns[-2:]) == ["status", "event_time"]
        assert list(users["user_id"]) == [1, 2, 3, 4]
        assert list(users["status"]) == ["present", "present", "present", "not_found"]
        assert list(users["user_engagement:views_1h"][:3]) == [2, 0, 1]
        assert users["user_engagement:dwell_mean_24h"][0] == 1000.0
        assert users["event_time"][0] == t - pd.Timedelta(minutes=1)
        assert users["event_time"][2] == t - pd.Timedelta(seconds=30)
        assert pd.isna(users["event_time"][3])
        assert str(users["event_time"].dtype) == "datetime64[ns, UTC]"
        assert list(posts["post_id"]) == [7, 9]
        assert list(posts["post_engagement:likes_1h"]) == [1, 0]


def _training_set_served(c: kiln.Client) -> bool:
    try:
        c.get_historical_features([{"user_id": 1, "ts": 1}], features=["user_engagement:views_1h"])
    except kiln.KilnError as e:
        if e.status == 404:
            return False
    return True


def test_historical_features(kiln_binary, tmp_path) -> None:
    pd = require_pandas()
    s = Server(kiln_binary, tmp_path / "data")
    try:
        with kiln.Client(s.url) as c:
            if not _training_set_served(c):
                pytest.skip("this server has no POST /v1/training-set (it answers 404): "
                            "get_historical_features is written against its documented shape")
            t = pd.Timestamp.now(tz="UTC").floor("ms")
            c.push("engagements", [ev(1, 7, "view", 10.0, t - pd.Timedelta(minutes=5))])
        # Training sets read the event archive; a restart archives what the
        # journal holds before it serves.
        s.stop()
        s = Server(kiln_binary, tmp_path / "data")
        with kiln.Client(s.url) as c:
            spine = pd.DataFrame({"user_id": [1, 1, 1], "ts": [t - pd.Timedelta(minutes=10), t, t], "label": [0, 1, 1]})
            out = c.get_historical_features(spine, features=["user_engagement:views_1h"], batch_rows=2)
            assert list(out.columns) == ["user_id", "ts", "label", "user_engagement:views_1h"]
            assert out["ts"].equals(spine["ts"])
            views = out["user_engagement:views_1h"]
            assert pd.isna(views[0]) and list(views[1:]) == [1, 1]

            rows = c.get_historical_features([{"user_id": 1, "ts": t.isoformat(), "label": 1}], service="user_profile")
            assert rows[0]["label"] == 1 and rows[0]["user_engagement:views_1h"] == 1
            assert rows[0]["ts"] == t.isoformat()

            with pytest.raises(kiln.BadRequest) as e:
                c.get_historical_features([{"user_id": 1, "ts": t}, {"user_id": "x", "ts": t}], features=["user_engagement:views_1h"])
            assert e.value.details and e.value.details[0]["index"] == 1
    finally:
        s.stop()


def test_feast_endpoint_answers_what_kiln_does(client: kiln.Client, server: Server) -> None:
    """The Feast-shaped read serves the values of /v1/features."""
    import json
    import urllib.request

    t = now()
    client.push("engagements", [ev(41, 7, "view", 1.0, t - dt.timedelta(minutes=1))])
    native = client.get_online_features(features=["user_engagement:views_1h"], entities={"user": [41, 42]})
    body = json.dumps({"features": ["user_engagement:views_1h"], "entities": {"user_id": [41, 42]}}).encode()
    req = urllib.request.Request(server.url + "/get-online-features?status=true", data=body, method="POST")
    with urllib.request.urlopen(req) as resp:
        feast = json.load(resp)
    assert feast["metadata"]["feature_names"] == ["user_id", "views_1h"]
    assert feast["results"][1]["values"] == [e["features"]["user_engagement:views_1h"] for e in native["user"]]
    assert feast["results"][1]["statuses"] == ["PRESENT", "NOT_FOUND"]
