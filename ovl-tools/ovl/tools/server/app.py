"""The server's WSGI app: published bundles out (GET/HEAD), node deltas in (PUT).

    GET  /profiles/<profile>/current/bundle.ovl   (and .minisig, versions/<N>/...)
    PUT  /deltas/<machine-id>/<sha256>.tar.zst    header X-Ovl-Signature: base64(minisig)
    GET  /                                        the read-only status page (status.py)
    GET  /boot.ipxe?mac=...&uuid=...              the machine's iPXE script (ovl.tools.netboot)

A PUT is accepted only from a registered machine, with a signature by that machine's node key
whose trusted comment names the machine and the hash; the body must hash to the name.
Refusals carry one line saying why (403 unknown machine / bad signature, 400 cut short or
wrong hash, 413 too large, 507 store full).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.core.errors import OvlError
from ovl.delta.protocol import DELTA_PATH, SIGNATURE_HEADER, signed_creation, trusted_comment
from ovl.tools.server import status
from ovl.tools.server.store import Store
from ovl.trust import minisign

StartResponse = Callable[..., Any]
_CHUNK = 1 << 20
DEFAULT_MAX_DELTA = 1 << 30


@dataclass(frozen=True)
class Reply:
    status: str
    reason: str

    def send(self, start_response: StartResponse) -> list[bytes]:
        body = (self.reason + "\n").encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response(self.status, headers)
        return [body]


@dataclass(frozen=True)
class _Upload:
    machine: str
    public_key: str
    sha256: str
    created_ns: int
    length: int
    signature: minisign.Signature


class ServerApp:
    def __init__(self, store: Store, max_delta: int = DEFAULT_MAX_DELTA) -> None:
        self.store = store
        self.max_delta = max_delta

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if path.startswith("/profiles/"):
            if method not in ("GET", "HEAD"):
                return Reply("405 Method Not Allowed", "bundles are read-only").send(start_response)
            return self.serve_file(environ, start_response, path)
        if path == "/boot.ipxe":
            from ovl.tools.netboot.app import serve_script

            return serve_script(self.store.root, environ, start_response)
        if path.startswith("/deltas/"):
            if method != "PUT":
                return Reply("405 Method Not Allowed", "deltas are PUT only").send(start_response)
            return self.receive_delta(environ, path).send(start_response)
        if path in ("", "/"):
            return status.respond(self.store, environ, start_response)
        return Reply("404 Not Found", "no such resource").send(start_response)

    # -- bundles out -----------------------------------------------------------------------

    def serve_file(
        self, environ: dict[str, Any], start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        published = (self.store.root / "profiles").resolve()
        parts = path.split("/")[2:]
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return Reply("404 Not Found", "no such file").send(start_response)
        target = published.joinpath(*parts).resolve()
        if not target.is_relative_to(published):
            return Reply("404 Not Found", "no such file").send(start_response)
        try:
            handle = target.open("rb")
        except OSError:
            return Reply("404 Not Found", "no such file").send(start_response)
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            handle.close()
            return Reply("404 Not Found", "no such file").send(start_response)
        # Strong: another file (a new version behind `current`) or a rewrite changes it.
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        headers = [
            ("ETag", etag),
            ("Last-Modified", modified),
            ("Cache-Control", "no-cache"),
            ("Accept-Ranges", "bytes"),
        ]
        if _not_modified(environ, etag, st.st_mtime):
            handle.close()
            start_response("304 Not Modified", headers)
            return []
        size, method = st.st_size, environ["REQUEST_METHOD"]
        try:
            span = _range(environ, size, (etag, modified)) if method == "GET" else None
        except _Unsatisfiable:
            handle.close()
            body = f"no such bytes in a file of {size}\n".encode()
            headers += [
                ("Content-Range", f"bytes */{size}"),
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body))),
            ]
            start_response("416 Range Not Satisfiable", headers)
            return [body]
        headers.append(("Content-Type", "application/octet-stream"))
        if span is not None:
            first, last = span
            headers += [
                ("Content-Length", str(last - first + 1)),
                ("Content-Range", f"bytes {first}-{last}/{size}"),
            ]
            start_response("206 Partial Content", headers)
            return _read_range(handle, first, last - first + 1)
        headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        if method == "HEAD":
            handle.close()
            return []
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(handle, _CHUNK)  # type: ignore[no-any-return]
        return _read_range(handle, 0, size)

    # -- deltas in -------------------------------------------------------------------------

    def receive_delta(self, environ: dict[str, Any], path: str) -> Reply:
        match = DELTA_PATH.match(path)
        if not match:
            return Reply("404 Not Found", "expected /deltas/<machine-id>/<sha256>.tar.zst")
        machine_id, sha = match["machine"], match["sha"]
        try:
            machine = self.store.machine(machine_id)
        except OvlError:
            machine = None
        if machine is None:
            return Reply("403 Forbidden", f"unknown machine {machine_id!r}")
        try:
            signature = _signature(environ)
        except OvlError as exc:
            return Reply("403 Forbidden", f"bad signature: {exc.line}")
        created_ns = signed_creation(signature.trusted_comment)
        if signature.trusted_comment != trusted_comment(machine_id, sha, created_ns):
            return Reply("403 Forbidden", "bad signature: trusted comment does not name this delta")
        if self.store.has_delta(machine_id, sha):
            return Reply("200 OK", "already stored")
        try:
            length = int(environ.get("CONTENT_LENGTH") or "-1")
        except ValueError:
            length = -1
        if length < 0:
            return Reply("411 Length Required", "Content-Length required")
        if length > self.max_delta:
            return Reply("413 Payload Too Large", f"delta larger than {self.max_delta} bytes")
        upload = _Upload(machine_id, machine.public_key, sha, created_ns, length, signature)
        return self._store_upload(environ, upload)

    def _store_upload(self, environ: dict[str, Any], upload: _Upload) -> Reply:
        sha, length = upload.sha256, upload.length
        body: Path | None = None
        try:
            body = self.store.temp_file(".upload")
            got, digest = _copy_body(environ["wsgi.input"], body, length)
            if got != length:
                return Reply("400 Bad Request", f"upload cut short: {got} of {length} bytes")
            if digest != sha:
                return Reply("400 Bad Request", f"content hash {digest} does not match the name")
            key = minisign.parse_public_key(upload.public_key, f"machine {upload.machine} key")
            minisign.verify_file(key, upload.signature, body, f"delta {sha[:12]}")
            problem = _unbakeable(body)
            if problem:
                return Reply("400 Bad Request", f"delta rejected: {problem}")
            self.store.accept_delta(
                upload.machine, sha, body, upload.signature.to_text(), upload.created_ns
            )
        except OSError as exc:
            error = self.store.os_error(exc, f"delta {sha[:12]}")
            return Reply("507 Insufficient Storage", error.line)
        except OvlError as exc:
            return Reply("403 Forbidden", f"bad signature: {exc.line}")
        finally:
            if body is not None:
                body.unlink(missing_ok=True)
        return Reply("201 Created", "stored")


def _unbakeable(delta: Path) -> str:
    """Why the bundle engine would refuse this delta as a layer ('' when it would not).

    Checked before accepting: one machine's hostile or broken delta must not make the next
    bundle version of its whole profile unbootable.
    """
    from ovl.format.scan import scan_bundle

    try:
        with delta.open("rb") as raw:
            scan_bundle(raw)
    except OvlError as exc:
        return exc.line
    return ""


def _signature(environ: dict[str, Any]) -> minisign.Signature:
    header = environ.get("HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_"))
    if not header:
        raise OvlError(f"missing {SIGNATURE_HEADER} header")
    try:
        text = base64.b64decode(header, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OvlError(f"{SIGNATURE_HEADER} is not base64 of a minisign signature") from exc
    return minisign.parse_signature(text, SIGNATURE_HEADER)


def _copy_body(stream: Any, dest: Path, length: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    got = 0
    with dest.open("wb") as out:
        while got < length:
            chunk = stream.read(min(_CHUNK, length - got))
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            got += len(chunk)
    return got, digest.hexdigest()


def _not_modified(environ: dict[str, Any], etag: str, mtime: float) -> bool:
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        return etag in [t.strip() for t in if_none_match.split(",")] or if_none_match == "*"
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since:
        try:
            when = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
        return int(mtime) <= when
    return False


class _Unsatisfiable(Exception):
    """A byte range that starts past the end of the file (HTTP 416)."""


def _range(
    environ: dict[str, Any], size: int, validators: tuple[str, str]
) -> tuple[int, int] | None:
    """The one byte range a GET asks for, (first, last) inclusive (RFC 9110 14); None for the
    whole file: no Range, an If-Range naming another version (neither the ETag nor the
    Last-Modified), several ranges or one that does not parse (which a server may ignore).
    _Unsatisfiable for a range that starts past the end."""
    asked = environ.get("HTTP_RANGE", "").strip()
    if not asked.startswith("bytes=") or "," in asked:
        return None
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and if_range.strip() not in validators:
        return None
    first_text, dash, last_text = asked.removeprefix("bytes=").strip().partition("-")
    if not dash or not (first_text or last_text):
        return None
    if not all(part.isdigit() for part in (first_text, last_text) if part):
        return None
    if not first_text:  # the last N bytes
        count = int(last_text)
        if not count or not size:
            raise _Unsatisfiable
        return max(0, size - count), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise _Unsatisfiable
    return first, min(int(last_text), size - 1) if last_text else size - 1


def _read_range(handle: Any, start: int, length: int) -> Iterable[bytes]:
    with handle:
        handle.seek(start)
        while length and (chunk := handle.read(min(_CHUNK, length))):
            length -= len(chunk)
            yield chunk
