"""Fixtures: a kiln binary built once per session, and real `kiln serve`
processes on free ports."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
from typing import Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

REPO = pathlib.Path(__file__).resolve().parents[2]
FEED = REPO / "examples" / "feed" / "kiln.yaml"


@pytest.fixture(scope="session")
def kiln_binary(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The kiln command, built from this repository with go build, or the
    one KILN_TEST_BINARY names (to test the client against another build)."""
    if os.environ.get("KILN_TEST_BINARY"):
        return pathlib.Path(os.environ["KILN_TEST_BINARY"])
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Python client's tests start a real kiln server: install Go (https://go.dev/doc/install)")
    out = tmp_path_factory.mktemp("bin") / "kiln"
    subprocess.run([go, "build", "-o", str(out), "./cmd/kiln"], cwd=REPO, check=True)
    return out


class Server:
    """A running `kiln serve`; ``url`` is where it listens."""

    def __init__(self, binary: pathlib.Path, data: pathlib.Path, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [str(binary), "serve", "-c", str(FEED), "--data", str(data), "--addr", "127.0.0.1:0",
             "--grpc-addr", "", "--admin-addr", "", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        # The server logs its address once it listens: read until then,
        # then keep draining its log so that it never blocks on the pipe.
        addr = None
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if "kiln serving" in line:
                m = re.search(r"\baddr=(\S+)", line)
                addr = m.group(1) if m else None
                break
        if addr is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("kiln serve did not start:\n" + "".join(self.log))
        scheme = "https" if "--tls-cert" in flags else "http"
        self.url = f"{scheme}://{addr}"
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=5)


@pytest.fixture(scope="module")
def server(kiln_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A kiln server of the feed example, shared by a test module."""
    s = Server(kiln_binary, tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


@pytest.fixture
def fresh_server(kiln_binary: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[Server]:
    """A kiln server of its own, for a test that needs empty rows."""
    s = Server(kiln_binary, tmp_path / "data")
    yield s
    s.stop()


def require_pandas():
    """pandas, or a skip; a failure when KILN_REQUIRE_PANDAS is set (the
    test script sets it, having installed pandas)."""
    try:
        import pandas
    except ImportError:
        if os.environ.get("KILN_REQUIRE_PANDAS"):
            pytest.fail("pandas is required (KILN_REQUIRE_PANDAS is set): apt-get install python3-pandas")
        pytest.skip("pandas is not installed")
    return pandas
