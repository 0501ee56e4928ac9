"""http(s) and gist channels against a real HTTP server (and proxy) on 127.0.0.1."""

from __future__ import annotations

import io
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovl.agent.channels.gist import GistChannel
from ovl.agent.channels.http import HttpChannel
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.deadline import Deadline
from ovl.agent.mounts import MountStack
from ovl.agent.net.links import AnyLinkUp
from ovl.core.errors import OvlError
from tests.agent.bootkit import (
    ForwardingProxy,
    LoopbackServer,
    fake_sysfs,
    free_port,
    write_tree,
)

BODY = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _ctx(tmp_path: Path, timeout: float = 5.0, **kw: object) -> BootContext:
    return BootContext(
        work_dir=tmp_path / "mnt",
        timeout=timeout,
        console=Console(stream=io.StringIO()),
        mounts=MountStack(),
        **kw,  # type: ignore[arg-type]
    )


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_unsigned_bundle_downloads_whole_and_no_signature(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY)
    fetched = HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert (tmp_path / "b.ovl").read_bytes() == BODY
    assert fetched.signature is None and fetched.size == len(BODY)
    assert [p for p, _ in server.log.seen] == ["/fleet.ovl", "/fleet.ovl.minisig"]
    assert _files(tmp_path) == ["b.ovl"]


def test_signature_beside_the_bundle_is_fetched(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.serve("/fleet.ovl", BODY)
    server.serve("/fleet.ovl.minisig", b"untrusted comment: sig\n")
    fetched = HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert fetched.signature == tmp_path / "b.ovl.minisig"
    assert fetched.signature.read_bytes() == b"untrusted comment: sig\n"


def test_stale_signature_from_an_earlier_fetch_is_removed(
    server: LoopbackServer, tmp_path: Path
) -> None:
    (tmp_path / "b.ovl.minisig").write_text("old")
    url = server.serve("/fleet.ovl", BODY)
    assert HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path)).signature is None
    assert _files(tmp_path) == ["b.ovl"]


def test_server_error_is_retried_for_the_whole_timeout_then_reported(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, status=500)
    ctx = _ctx(tmp_path, timeout=2)
    start = time.monotonic()
    with pytest.raises(OvlError, match=r"^HTTP 500 \((\d+) attempts\)$") as failed:
        HttpChannel(url).fetch(tmp_path / "b.ovl", ctx)
    assert 2 <= time.monotonic() - start < 4
    attempts = int(failed.value.line.split("(")[1].split()[0])
    assert attempts >= 3 and len(server.log.seen) == attempts
    retried = [line for line in ctx.console.lines if "failed: HTTP 500; retry in" in line]
    assert len(retried) == attempts - 1  # one line per attempt that is retried
    assert retried[0].startswith(f"ovl: fetch: {url} attempt 1 failed: HTTP 500; retry in ")
    assert _files(tmp_path) == []


def test_a_transient_error_recovers_on_retry(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.serve("/fleet.ovl", BODY, fail_first=1)
    HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert (tmp_path / "b.ovl").read_bytes() == BODY


def test_not_found_is_final_without_retry(server: LoopbackServer, tmp_path: Path) -> None:
    with pytest.raises(OvlError, match=r"^HTTP 404$"):
        HttpChannel(server.base + "/missing.ovl").fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert len(server.log.seen) == 1


def test_server_down_is_a_connection_failure(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/fleet.ovl"
    with pytest.raises(OvlError, match=r"^connection failed \(\d+ attempts\)$"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, timeout=2))


def test_slow_server_times_out_within_the_channel_timeout(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, delay=3)
    start = time.monotonic()
    with pytest.raises(OvlError, match="read timed out"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, timeout=0.5))
    assert time.monotonic() - start < 2.5
    assert _files(tmp_path) == []


def test_connection_always_closed_at_the_same_byte_is_truncated_without_progress(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """No Range support, so every attempt starts over and stops at byte 1000: that is no
    progress, and the channel gives up when the timeout has passed (dracut-ng#2639: a short
    body is never accepted)."""
    url = server.serve("/fleet.ovl", BODY, truncate_to=1000, ranges=False)
    start = time.monotonic()
    with pytest.raises(OvlError, match=r"^truncated: connection closed at 0.0 of 1.0 MB"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, timeout=3))
    assert time.monotonic() - start < 5
    assert _files(tmp_path) == []


def test_announced_length_longer_than_the_body_is_truncated(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, length=len(BODY) + 10, ranges=False)
    with pytest.raises(OvlError, match=r"^truncated"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, timeout=3))
    assert _files(tmp_path) == []


def test_body_over_the_size_cap_is_refused_without_retry(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY)
    with pytest.raises(OvlError, match="over the 1000 byte cap"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, size_cap=1000))
    assert len(server.log.seen) == 1
    assert _files(tmp_path) == []


def test_proxy_carries_the_request(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.serve("/fleet.ovl", BODY)
    with ForwardingProxy() as proxy:
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, proxy=proxy.url))
    assert proxy.forwarded == [url, url + ".minisig"]
    assert (tmp_path / "b.ovl").read_bytes() == BODY


def test_dead_proxy_is_reported_as_the_proxy(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.serve("/fleet.ovl", BODY)
    ctx = _ctx(tmp_path, timeout=2, proxy=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OvlError, match="proxy"):
        HttpChannel(url).fetch(tmp_path / "b.ovl", ctx)
    assert server.log.seen == []


def test_gist_fetches_the_raw_file_below_the_base(server: LoopbackServer, tmp_path: Path) -> None:
    server.serve("/g/abc123/raw/fleet.txt", b"-----BEGIN OVL BUNDLE-----\n")
    channel = GistChannel("abc123", "fleet.txt", server.base + "/g")
    channel.fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert (tmp_path / "b.ovl").read_bytes() == b"-----BEGIN OVL BUNDLE-----\n"
    assert channel.describe() == "gist:abc123/fleet.txt"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the cryptography library."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_trusts_the_ca_bundle_the_shim_names_and_refuses_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    with LoopbackServer() as srv:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        srv.httpd.socket = context.wrap_socket(srv.httpd.socket, server_side=True)
        url = srv.serve("/fleet.ovl", BODY).replace("http://", "https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(OvlError, match="TLS handshake failed"):
            HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path, timeout=2))
        assert srv.log.seen == []  # refused in the handshake, before any request
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        HttpChannel(url).fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert (tmp_path / "b.ovl").read_bytes() == BODY


def test_network_of_the_initramfs_is_waited_for_until_a_nic_is_up_or_the_deadline(
    tmp_path: Path,
) -> None:
    network = AnyLinkUp(fake_sysfs(tmp_path / "sys"))
    network.wait(Deadline(1))  # eth0 is up
    write_tree(tmp_path / "sys" / "class" / "net" / "eth0", {"operstate": "down\n"})
    start = time.monotonic()
    with pytest.raises(OvlError, match=r"^no network interface came up$"):
        network.wait(Deadline(0.3))  # lo alone does not count
    assert 0.3 <= time.monotonic() - start < 2
    assert network.describe() is None
