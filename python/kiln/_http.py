"""A small pool of keep-alive HTTP/1.1 connections to one server."""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import urllib.parse
from typing import Mapping


class ConnectionFailed(Exception):
    """No answer came. ``sent`` says whether the request may have reached
    the server: when False (the connection could not be made), nothing of
    it was applied and it may be sent again, whatever it was."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Response:
    """A whole answer: status, headers and body."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Pool:
    """Keeps up to ``size`` idle connections to the server of ``url`` and
    reuses them, so a request costs no new TCP (or TLS) handshake. Safe for
    use from several threads: each request takes a connection of its own.
    """

    def __init__(self, url: str, timeout: float, size: int = 8,
                 context: ssl.SSLContext | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {url!r}: write http://host:port or https://host:port")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self.prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._context = context
        self._size = size
        self._idle: list[http.client.HTTPConnection] = []  # guarded by _lock
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection the server has not closed, or a new one; and
        whether it is new."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(), True
            if conn.sock is not None and not _closed_by_peer(conn.sock):
                return conn, False
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        """Sends one request and reads its whole answer. Raises
        ConnectionFailed when no answer came."""
        conn, new = self._take()
        if new:
            try:
                conn.connect()
            except OSError as e:
                conn.close()
                raise ConnectionFailed(f"cannot connect to {self._host}:{self._port}: {e}", sent=False) from e
        try:
            conn.request(method, self.prefix + path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ConnectionFailed(f"{method} {path}: no answer from {self._host}:{self._port}: {e}", sent=True) from e
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def close(self) -> None:
        """Closes the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _closed_by_peer(sock: object) -> bool:
    """Whether an idle connection's socket has something to read: the
    server closed it (or sent what no request asked for). Either way it
    cannot carry a request, and sending one on it would fail after the
    request may have left, which a push must not risk."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
