"""Receiving uploads without letting a client hold the service's memory or a connection forever.

A body stays in memory only while it is small (``spool_threshold``) and all in-memory bodies together fit the
``memory_budget``; beyond that it goes to a private temp file (mode 0600, in a 0700 folder, named like every kzlabel
temp file so a killed server's leftovers are swept by the next one) that the handlers read by path, and that is
removed when the request ends. Spooled bytes of all requests together stay under ``spool_budget`` (503 past it).
While a body arrives, a gap longer than ``body_timeout_s`` or an average rate under ``min_upload_rate`` (counted
once ``body_timeout_s`` has passed) ends the request with 408.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from ..io import temp_beside, temp_dir
from .http import HTTPFailure
from .limits import MIB, ByteBudget, ServiceLimits

__all__ = ["MULTIPART", "Upload", "Uploads", "busy", "scrub"]

MULTIPART = "multipart/form-data"
WRITE_BLOCK = 1 * MIB  # a spooling upload stages this much before one write (in a thread, off the event loop)
REPLAY_BLOCK = 256 * 1024  # a spooled multipart body is fed to the form parser in blocks of this size


def busy(what: str) -> HTTPFailure:
    return HTTPFailure(
        503, "busy", f"the server is holding too many uploads ({what}); retry later", {"Retry-After": "5"}
    )


class Upload:
    """One received body: bytes in memory while small, else a spooled file; ``close()`` gives back its budgets and
    removes the file."""

    def __init__(self, owner: Uploads, name: str | None, expected: int | None = None) -> None:
        self.owner = owner
        self.name = name
        self.size = 0
        self.path: Path | None = None
        self.data: bytes | None = None
        self._chunks: list[bytes] = []
        self._in_memory = 0  # memory budget held
        self._disk_held = 0  # spool budget held (reserved up front for a declared length)
        self._on_disk = 0
        self._staged: list[bytes] = []
        self._staged_bytes = 0
        self._fh: IO[bytes] | None = None
        if expected is not None and expected > owner.limits.spool_threshold:  # will spool: reserve the disk now
            if not owner.disk.take(expected):
                raise busy("spool budget")
            self._disk_held = expected

    @property
    def source(self) -> bytes | Path:
        if self.path is not None:
            return self.path
        assert self.data is not None, "finish() first"
        return self.data

    def _take_disk(self, n: int) -> None:
        need = self._on_disk + n - self._disk_held
        if need > 0:
            if not self.owner.disk.take(need):
                raise busy("spool budget")
            self._disk_held += need
        self._on_disk += n

    async def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.path is None:
            if self.size <= self.owner.limits.spool_threshold and self.owner.memory.take(len(chunk)):
                self._in_memory += len(chunk)
                self._chunks.append(chunk)
                return
            self._spill()
        self._take_disk(len(chunk))
        self._staged.append(chunk)
        self._staged_bytes += len(chunk)
        if self._staged_bytes >= WRITE_BLOCK:
            await self._flush()

    def _spill(self) -> None:
        """Move to a spool file: what is in memory becomes staged for writing, its memory budget is given back."""
        self.path = self.owner.new_spool()
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in finish() or close()
        held = sum(len(c) for c in self._chunks)
        self._take_disk(held)
        self._staged, self._staged_bytes, self._chunks = self._chunks, held, []
        self.owner.memory.give(self._in_memory)
        self._in_memory = 0

    async def _flush(self) -> None:
        if not self._staged:
            return
        assert self._fh is not None
        block = b"".join(self._staged)
        self._staged, self._staged_bytes = [], 0
        await anyio.to_thread.run_sync(self._fh.write, block, limiter=self.owner.writers)

    async def finish(self) -> None:
        if self.path is None:
            self.data = b"".join(self._chunks)
            self._chunks = []
            return
        await self._flush()
        assert self._fh is not None
        self._fh.close()
        self._fh = None

    def close(self) -> None:
        self.owner.memory.give(self._in_memory)
        self.owner.disk.give(self._disk_held)
        self._in_memory = self._disk_held = 0
        self._chunks = self._staged = []
        self.data = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def blocks(self) -> AsyncIterator[bytes]:
        """The finished body again, in blocks (to replay it into the multipart parser)."""

        async def gen() -> AsyncIterator[bytes]:
            if self.path is None:
                yield self.data or b""
                return
            with open(self.path, "rb") as fh:
                while block := fh.read(REPLAY_BLOCK):
                    yield block

        return gen()


class Uploads:
    """The service's uploads: budgets shared by every request, and the private spool folder (made at the first spill,
    removed by ``close()`` when the service stops)."""

    def __init__(self, limits: ServiceLimits) -> None:
        self.limits = limits
        self.memory = ByteBudget(limits.memory_budget)
        self.disk = ByteBudget(limits.spool_budget)
        self.writers = anyio.CapacityLimiter(4)  # spool writes, apart from the CPU jobs' threads
        self.folder: Path | None = None

    def new_spool(self) -> Path:
        """A new empty 0600 file in the private spool folder (0700)."""
        if self.folder is None or not self.folder.is_dir():
            self.folder = temp_dir("kzlabel-serve", self.limits.spool_dir)
        return temp_beside(self.folder / "upload")

    def spooled(self) -> list[Path]:
        """The spool files that exist now (for tests and the health of the service)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(self.folder.iterdir())

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def declared_length(self, request: Request) -> int | None:
        declared = request.headers.get("content-length")
        if declared is None:
            return None
        try:
            length = int(declared)
        except ValueError:
            raise HTTPFailure(400, "bad_request", "invalid Content-Length header") from None
        if length < 0:
            raise HTTPFailure(400, "bad_request", "invalid Content-Length header")
        if length > self.limits.max_upload:
            raise self.too_big()
        return length

    def too_big(self) -> HTTPFailure:
        return HTTPFailure(413, "payload_too_large", f"upload exceeds the limit of {self.limits.max_upload} bytes")

    async def chunks(self, request: Request) -> AsyncIterator[bytes]:
        """The body's chunks, cut off past ``max_upload`` (413), a silent gap or a trickle (408)."""
        lim = self.limits
        start = time.monotonic()
        size = 0
        stream = request.stream().__aiter__()
        try:
            while True:
                chunk: bytes | None = None
                with anyio.move_on_after(lim.body_timeout_s):
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        return
                if chunk is None:
                    raise HTTPFailure(408, "body_timeout", f"no upload data for {lim.body_timeout_s:g} s")
                elapsed = time.monotonic() - start
                size += len(chunk)
                if size > lim.max_upload:
                    raise self.too_big()
                if elapsed > lim.body_timeout_s and size < lim.min_upload_rate * elapsed:
                    raise HTTPFailure(
                        408, "body_too_slow", f"upload slower than {lim.min_upload_rate} bytes/s on average"
                    )
                if chunk:
                    yield chunk
        except ClientDisconnect:
            raise HTTPFailure(400, "client_disconnected", "the client closed the connection mid-upload") from None

    async def receive(self, request: Request) -> Upload:
        """The upload of a raw body (name from ``?name=``) or of a multipart ``file`` field; the caller closes it."""
        name: str | None = request.query_params.get("name") or None
        upload = Upload(self, name, self.declared_length(request))
        try:
            async for chunk in self.chunks(request):
                await upload.add(chunk)
            await upload.finish()
            if request.headers.get("content-type", "").lower().startswith(MULTIPART):
                outer, upload = upload, Upload(self, name)
                try:
                    await self._unpack_multipart(request, outer, upload)
                finally:
                    outer.close()
        except BaseException:
            upload.close()
            raise
        if not upload.size:
            upload.close()
            raise HTTPFailure(422, "empty_body", "the upload is empty")
        return upload

    async def _unpack_multipart(self, request: Request, outer: Upload, into: Upload) -> None:
        """Parse the received multipart body (replayed from memory or its spool file) and receive its ``file``
        field into ``into``."""
        blocks = outer.blocks()

        async def receive() -> dict[str, Any]:
            async for block in blocks:
                return {"type": "http.request", "body": block, "more_body": True}
            return {"type": "http.request", "body": b"", "more_body": False}

        replay = Request(request.scope, receive)
        try:
            form = await replay.form(max_files=1, max_fields=16)
        except Exception as exc:  # noqa: BLE001 - python-multipart / starlette raise assorted types for bad forms
            raise HTTPFailure(400, "bad_multipart", f"malformed multipart body ({type(exc).__name__})") from None
        try:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise HTTPFailure(422, "missing_file", "multipart form needs a 'file' field holding the upload")
            into.name = part.filename or into.name
            while block := await part.read(WRITE_BLOCK):
                await into.add(block)
            await into.finish()
        finally:
            await form.close()


def scrub(text: str, upload: Upload) -> str:
    """A message with the spool file's path replaced by the upload's name (the path is ours, not the client's)."""
    if upload.path is None:
        return text
    shown = upload.name or "upload"
    return text.replace(os.fspath(upload.path), shown).replace(upload.path.name, shown)
