"""A file over http(s) and, when the server has it, its `.minisig`: what the http and gist
channels and root images fetch. Both land through `.part` files renamed into place."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.deadline import Deadline
from ovl.agent.download.resume import download_file
from ovl.agent.download.session import is_loopback, open_session
from ovl.agent.fetched import Fetched, partial_path, signature_path


def fetch_url(url: str, dest: Path, ctx: BootContext) -> Fetched:
    """`url` into `dest` and, when the server has it, `url.minisig` into `dest.minisig`.

    Waits for the network first (unless the host is loopback); then retries and resumes for as
    long as `ctx.timeout` passes without progress (forever when it is infinite)."""
    deadline = Deadline(ctx.timeout)
    if not is_loopback(url):
        ctx.network.wait(deadline)
    say = partial(ctx.console.line, "fetch")
    signature = signature_path(dest)
    with open_session(ctx.proxy) as session:
        body = download_file(
            session, url, partial_path(dest), deadline, size_cap=ctx.size_cap, say=say
        )
        assert body is not None
        try:
            sig = download_file(
                session,
                url + ".minisig",
                partial_path(signature),
                deadline,
                size_cap=ctx.size_cap,
                say=say,
                optional=True,
            )
        except BaseException:
            partial_path(dest).unlink(missing_ok=True)
            raise
    os.replace(partial_path(dest), dest)
    if sig is None:
        signature.unlink(missing_ok=True)
        return Fetched(dest, None, body.size, body.sha256)
    os.replace(partial_path(signature), signature)
    return Fetched(dest, signature, body.size, body.sha256)
