"""The client against a kiln server that asks for tokens and mutual TLS."""

from __future__ import annotations

import pathlib
import re
import shutil
import ssl
import subprocess

import pytest

import kiln
from conftest import Server


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate,
    made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.fail("these tests make certificates with the openssl command: apt-get install openssl")
    d = tmp_path_factory.mktemp("pki")
    f = {k: str(d / k) for k in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f["ca.key"], "-out", f["ca.pem"], "-days", "1", "-subj", "/CN=kiln test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        extfile = d / f"{name}.ext"
        extfile.write_text(ext)
        csr = str(d / f"{name}.csr")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f[f"{name}.key"], "-out", csr, "-subj", f"/CN=kiln test {name}")
        _openssl("x509", "-req", "-in", csr, "-CA", f["ca.pem"], "-CAkey", f["ca.key"], "-CAcreateserial",
                 "-out", f[f"{name}.pem"], "-days", "1", "-extfile", str(extfile))
    return f


def make_token(binary: pathlib.Path, name: str, scopes: str, *limits: str) -> tuple[str, str]:
    """A token made with kiln token, and its line for the token file."""
    out = subprocess.run([str(binary), "token", "--name", name, "--scopes", scopes, *limits],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"\n(kiln_\S+)\n\nline for the token file:\n(.*)\n$", out)
    assert m, out
    return m.group(1), m.group(2)


@pytest.fixture(scope="module")
def secure(kiln_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory, pki: dict[str, str]):
    d = tmp_path_factory.mktemp("secure")
    tokens = {
        "reader": make_token(kiln_binary, "reader", "read"),
        "pusher": make_token(kiln_binary, "pusher", "push,read"),
        "slow": make_token(kiln_binary, "slow", "read", "--read-rps", "0.5"),
    }
    (d / "tokens").write_text("".join(line + "\n" for _, line in tokens.values()))
    s = Server(kiln_binary, d / "data", "--token-file", str(d / "tokens"),
               "--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"], "--client-ca", pki["ca.pem"])
    yield s, {name: tok for name, (tok, _) in tokens.items()}
    s.stop()


def tls(pki: dict[str, str]) -> dict[str, str]:
    return {"ca_file": pki["ca.pem"], "cert_file": pki["client.pem"], "key_file": pki["client.key"]}


def test_token_and_mutual_tls(secure, pki) -> None:
    server, tokens = secure
    assert server.url.startswith("https://")
    with kiln.Client(server.url, token=tokens["reader"], **tls(pki)) as c:
        assert any(f.name == "user_engagement:views_1h" for f in c.list_features())
        online = c.get_online_features(service="user_profile", entities={"user": [1]})
        assert online.statuses("user") == ["not_found"]
        with pytest.raises(kiln.Forbidden, match='token "reader" may not push events'):
            c.push("engagements", [{"user_id": 1, "post_id": 2, "kind": "view", "ts": "2026-11-26T10:00:00Z"}])
    with kiln.Client(server.url, token=tokens["pusher"], **tls(pki)) as c:
        r = c.push("engagements", [{"user_id": 1, "post_id": 2, "kind": "view", "ts": "2026-11-26T10:00:00Z"}])
        assert r.accepted == 1
    with kiln.Client(server.url, **tls(pki)) as c:
        with pytest.raises(kiln.Unauthorized, match="needs a bearer token"):
            c.describe()
    with kiln.Client(server.url, token="kiln_wrong", **tls(pki)) as c:
        with pytest.raises(kiln.Unauthorized, match="not one this server knows"):
            c.describe()


def test_tls_needs_the_ca_and_a_client_certificate(secure, pki) -> None:
    server, tokens = secure
    # Without the client certificate the handshake fails: no answer.
    with kiln.Client(server.url, token=tokens["reader"], ca_file=pki["ca.pem"], retries=0) as c:
        with pytest.raises(kiln.Unavailable):
            c.describe()
    # Without the CA, the server's certificate is not trusted.
    with kiln.Client(server.url, token=tokens["reader"], retries=0) as c:
        with pytest.raises(kiln.Unavailable):
            c.describe()
    # An ssl context of one's own works as the files do.
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    ctx.load_cert_chain(pki["client.pem"], pki["client.key"])
    with kiln.Client(server.url, token=tokens["reader"], ssl_context=ctx) as c:
        assert c.describe()["project"] == "feed"
    with pytest.raises(ValueError, match="not both"):
        kiln.Client(server.url, ssl_context=ctx, ca_file=pki["ca.pem"])
    with pytest.raises(ValueError, match="https://"):
        kiln.Client("http://127.0.0.1:1", ca_file=pki["ca.pem"])


def test_rate_limit_is_per_token(secure, pki) -> None:
    server, tokens = secure
    with kiln.Client(server.url, token=tokens["slow"], retries=0, **tls(pki)) as slow, \
            kiln.Client(server.url, token=tokens["reader"], retries=0, **tls(pki)) as other:
        slow.describe()
        with pytest.raises(kiln.Overloaded, match='token "slow" is over its read limit of 0.5 requests/s') as e:
            slow.describe()
        assert e.value.retry_after == 2
        assert other.describe()["project"] == "feed"
