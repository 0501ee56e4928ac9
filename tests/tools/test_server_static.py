"""Published bundles served with ETag/Last-Modified, by `ovl server serve` and by the shipped
nginx config on the real nginx; private parts of the server dir are never served."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.tools.server_fixtures import (
    free_port,
    keypair,
    make_bundle,
    ovl,
    running_server,
    spool_tree,
    stock_signer,
)

pytestmark = pytest.mark.subprocess

BUNDLE = "/profiles/lab/current/bundle.ovl"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    srv = tmp_path / "srv"
    bundle = make_bundle(tmp_path / "fleet.ovl", {"etc/motd": b"hello\n"})
    pub, _ = keypair(tmp_path / "keys", "node1")
    for args in (
        ["import", "lab", str(bundle)],
        [
            "add-machine",
            "node1",
            "--profile",
            "lab",
            "--mac",
            "52:54:00:00:00:01",
            "--key",
            str(pub),
        ],
    ):
        assert ovl("server", "--root", str(srv), *args).returncode == 0
    return srv


def nginx_main_conf(prefix: Path, server_block: str) -> str:
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"user root;\nworker_processes 2;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n{temps}\n{server_block}\n}}\n"
    )


@pytest.fixture
def nginx_url(tmp_path: Path, root: Path) -> Iterator[str]:
    """The shipped config on the real nginx, in front of `ovl server serve`."""
    with running_server(root) as upstream:
        port = free_port()
        block = ovl("server", "--root", str(root), "nginx-conf", "--listen", f"127.0.0.1:{port}",
                    "--upstream", upstream.removeprefix("http://"))  # fmt: skip
        assert block.returncode == 0, block.stderr
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(nginx_main_conf(prefix, block.stdout))
        proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    requests.get(url + "/", timeout=1)
                    break
                except requests.ConnectionError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture(params=["ovl", "nginx"])
def url(request: pytest.FixtureRequest, root: Path) -> Iterator[str]:
    if request.param == "nginx":
        yield request.getfixturevalue("nginx_url")
    else:
        with running_server(root) as served:
            yield served


def test_bundle_is_served_with_etag_and_last_modified(url: str, root: Path) -> None:
    reply = requests.get(url + BUNDLE, timeout=10)
    assert reply.status_code == 200
    assert reply.content == (root / "profiles/lab/versions/000001/bundle.ovl").read_bytes()
    etag, modified = reply.headers["ETag"], reply.headers["Last-Modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    assert (
        requests.get(url + BUNDLE, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    )
    since = requests.get(url + BUNDLE, headers={"If-Modified-Since": modified}, timeout=10)
    assert since.status_code == 304
    head = requests.head(url + BUNDLE, timeout=10)
    assert head.status_code == 200 and head.headers["ETag"] == etag


def test_netboot_script_and_the_files_it_names_are_served(
    url: str, root: Path, tmp_path: Path
) -> None:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(bytes(0x202) + b"HdrS" + bytes(100))  # the bzImage boot header
    initrd.write_bytes(b"initramfs")
    published = ovl("netboot", "publish", "--root", str(root), "lab", "--kernel", str(kernel),
                    "--initrd", str(initrd))  # fmt: skip
    assert published.returncode == 0, published.stderr
    mac = "52:54:00:00:00:01"
    machine = ovl("netboot", "add-machine", "--root", str(root), "lab", "--mac", mac)
    assert machine.returncode == 0, machine.stderr
    script = requests.get(url + "/boot.ipxe?mac=52:54:00:00:00:01&uuid=", timeout=10)
    assert script.status_code == 200 and script.text.startswith("#!ipxe\n")
    assert f"kernel {url}/profiles/lab/netboot/vmlinuz initrd=initrd.img " in script.text
    assert f"ovl={url}/profiles/lab/current/bundle.ovl" in script.text
    got = requests.get(url + "/profiles/lab/netboot/vmlinuz", timeout=10)
    assert got.status_code == 200 and got.content == kernel.read_bytes()
    stranger = requests.get(url + "/boot.ipxe?mac=not-a-mac", timeout=10)
    assert stranger.status_code == 200 and "menu ovl netboot" in stranger.text


def test_private_parts_are_not_served(url: str) -> None:
    for path in (
        "/machines/node1.json",
        "/profiles/lab/.lock",
        "/profiles/lab/../../machines/node1.json",
        "/profiles/%2e%2e/machines/node1.json",
        "/tmp/",
        "/profiles/lab/nothing",
    ):
        assert requests.get(url + path, timeout=10).status_code in (403, 404), path
    assert requests.put(url + BUNDLE, data=b"x", timeout=10).status_code in (403, 405)


def test_new_version_is_seen_at_once_through_the_current_symlink(url: str, tmp_path: Path) -> None:
    first = requests.get(url + BUNDLE, timeout=10)
    newer = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    assert (
        ovl("server", "--root", str(tmp_path / "srv"), "import", "lab", str(newer)).returncode == 0
    )
    second = requests.get(url + BUNDLE, timeout=10)
    assert second.content == newer.read_bytes() and second.headers["ETag"] != first.headers["ETag"]


def test_versions_of_one_size_published_in_one_second_differ_for_caches(
    url: str, root: Path, tmp_path: Path
) -> None:
    """nginx's ETag is mtime-size and Last-Modified has whole seconds: publishing gives each
    version an mtime a second past the last, so a cache's revalidation sees the new one."""
    old = requests.head(url + BUNDLE, timeout=10).headers
    newer = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"hello!"}, serial=2)
    first = root / "profiles/lab/versions/000001/bundle.ovl"
    assert newer.stat().st_size == first.stat().st_size  # the case nginx cannot tell apart
    assert ovl("server", "--root", str(root), "import", "lab", str(newer)).returncode == 0
    second = root / "profiles/lab/versions/000002/bundle.ovl"
    assert second.stat().st_mtime == int(second.stat().st_mtime) >= first.stat().st_mtime + 1
    stale = {"If-None-Match": old["ETag"], "If-Modified-Since": old["Last-Modified"]}
    reply = requests.get(url + BUNDLE, headers=stale, timeout=10)
    assert reply.status_code == 200 and reply.content == newer.read_bytes()


def test_delta_upload_passes_through_nginx(tmp_path: Path, nginx_url: str, root: Path) -> None:
    from ovl.delta.protocol import trusted_comment
    from ovl.delta.spool import Spool

    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/hostname": b"node1\n"}, tmp_path / "upper")
    (delta,) = spool.pending()
    text = stock_signer(tmp_path / "keys/node1.key")(
        delta.path, trusted_comment("node1", delta.sha256, delta.created_ns)
    )
    target = f"{nginx_url}/deltas/node1/{delta.sha256}.tar.zst"
    headers = {"X-Ovl-Signature": base64.b64encode(text.encode()).decode()}
    reply = requests.put(target, data=delta.path.read_bytes(), headers=headers, timeout=10)
    assert reply.status_code == 201, reply.text
    assert (root / "deltas/node1" / f"{delta.sha256}.json").is_file()
    assert requests.get(target, timeout=10).status_code == 403


def test_byte_ranges_are_served_with_if_range_and_416_past_the_end(url: str, root: Path) -> None:
    """What an agent fetching only its frames asks: a suffix (the index), ranges with If-Range
    (its frames), and nothing past the end."""
    data = (root / "profiles/lab/versions/000001/bundle.ovl").read_bytes()
    size = len(data)
    etag = requests.head(url + BUNDLE, timeout=10).headers["ETag"]
    for asked, first, last in (
        ("10-19", 10, 19),
        ("-12", size - 12, size - 1),
        ("5-", 5, size - 1),
    ):
        reply = requests.get(url + BUNDLE, headers={"Range": f"bytes={asked}"}, timeout=10)
        assert reply.status_code == 206, asked
        assert reply.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert reply.content == data[first : last + 1] and reply.headers["ETag"] == etag
    same = {"Range": "bytes=3-7", "If-Range": etag}
    reply = requests.get(url + BUNDLE, headers=same, timeout=10)
    assert reply.status_code == 206 and reply.content == data[3:8]
    other = {"Range": "bytes=3-7", "If-Range": '"another-version"'}
    reply = requests.get(url + BUNDLE, headers=other, timeout=10)
    assert reply.status_code == 200 and reply.content == data  # the whole current file
    past = requests.get(url + BUNDLE, headers={"Range": f"bytes={size}-"}, timeout=10)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
    assert requests.get(url + BUNDLE, timeout=10).headers["Accept-Ranges"] == "bytes"


def test_a_new_version_makes_an_old_if_range_get_the_whole_new_file(
    url: str, tmp_path: Path
) -> None:
    etag = requests.head(url + BUNDLE, timeout=10).headers["ETag"]
    newer = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2 " * 1000}, serial=2)
    assert (
        ovl("server", "--root", str(tmp_path / "srv"), "import", "lab", str(newer)).returncode == 0
    )
    reply = requests.get(url + BUNDLE, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=10)
    assert reply.status_code == 200 and reply.content == newer.read_bytes()
    assert reply.headers["ETag"] != etag
