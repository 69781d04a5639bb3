"""Download release images over HTTP(S): streamed, resumable, retried, hashed on the way.

The file grows in ``<dest>.part`` next to ``dest`` and is renamed into place only when it is
complete, so ``dest`` either does not exist or is whole. A ``.part`` left by a cut connection,
a timeout, Ctrl-C or an earlier process is resumed with an HTTP range request.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from tqdm import tqdm  # type: ignore[import-untyped]

from pytest_minix.errors import DownloadError

if TYPE_CHECKING:
    from hashlib import _Hash

# "bytes 100-199/200" (206) and "bytes */200" (416); the total may be "*" (unknown).
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclass
class DownloadResult:
    """A finished download."""

    path: Path
    size: int
    sha256: str
    #: HTTP requests made, failed ones included.
    attempts: int
    #: Bytes kept from an earlier attempt or process when the last, successful attempt began.
    resumed_from: int


class _Transient(Exception):
    """An attempt failed in a way a later attempt may fix; the message says what happened."""


class _StartOver(Exception):
    """The ``.part`` does not belong to this file: it was deleted and the download starts afresh."""


def download(
    url: str,
    dest: Path,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool | None = None,
    chunk_size: int = 1 << 16,
) -> DownloadResult:
    """Download ``url`` to ``dest`` and return what was fetched.

    ``timeout`` bounds connecting and each wait for data, so a stalled server fails the attempt.
    Connection errors, timeouts, 5xx and short bodies are retried up to ``retries`` times,
    sleeping ``backoff * 2**k`` seconds before retry ``k``; a 4xx fails at once. A 416 caused by
    a stale ``.part`` costs one extra request that is not counted against ``retries``.
    ``progress=None`` shows a progress bar only when stderr is a terminal.
    Raises :class:`DownloadError`; I/O errors on the local disk propagate as :class:`OSError`.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"Cannot download {url!r}: only http:// and https:// URLs are supported.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with requests.Session() as session:
        job = _Job(url, dest, session, timeout=timeout, chunk_size=chunk_size, progress=_want_progress(progress))
        while True:
            try:
                return job.attempt()
            except _StartOver:
                continue
            except _Transient as exc:
                failures += 1
                if failures > retries:
                    # The .part stays for a later resume; the caller says so, with what else to do.
                    raise DownloadError(job.error(str(exc))) from None
                time.sleep(backoff * 2 ** (failures - 1))


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class _Job:
    """The state one download carries from attempt to attempt."""

    def __init__(
        self, url: str, dest: Path, session: requests.Session, *, timeout: float, chunk_size: int, progress: bool
    ) -> None:
        self.url = url
        self.dest = dest
        self.session = session
        self.part = dest.with_name(dest.name + ".part")
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.progress = progress
        self.attempts = 0
        # The hash of the .part as this job last left it, so a resume does not re-read it.
        self._hash: _Hash | None = None
        self._hashed = -1

    def error(self, what: str) -> str:
        """A DownloadError message: the URL, what happened, the number of attempts."""
        n = self.attempts
        return f"Could not download {self.url} after {n} attempt{'s' if n != 1 else ''}: {what}."

    def part_size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _drop_part(self) -> None:
        self.part.unlink(missing_ok=True)
        self._hash, self._hashed = None, -1

    def _prefix_hash(self, size: int) -> _Hash:
        """A SHA-256 object fed the ``size`` bytes of the .part (which has exactly that size)."""
        if self._hash is None or self._hashed != size:
            with self.part.open("rb") as f:
                self._hash = hashlib.file_digest(f, "sha256")
            self._hashed = size
        return self._hash

    def attempt(self) -> DownloadResult:
        """Make one request and stream its body into the .part; finish the download if it is whole."""
        offset = self.part_size()
        # identity: a Content-Length, a range and the file on disk then all count the same bytes
        # (servers that gzip-encode .gz files on the fly would otherwise break resuming).
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        t = self.timeout
        self.attempts += 1
        try:
            resp = self.session.get(self.url, headers=headers, stream=True, timeout=(t, t))
        except requests.ConnectTimeout:
            raise _Transient(f"timed out after {t:g} s connecting") from None
        except requests.ReadTimeout:
            raise _Transient(f"timed out after {t:g} s waiting for a response") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"connection error ({_root_cause(exc)})") from None
        except requests.RequestException as exc:  # too many redirects, an invalid URL, ...
            raise DownloadError(self.error(str(exc))) from None
        with resp:
            return self._receive(resp, offset)

    def _receive(self, resp: requests.Response, offset: int) -> DownloadResult:
        status, reason = resp.status_code, resp.reason or ""
        what = f"HTTP {status} {reason}".rstrip()
        if status == 416 and offset:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
            if m and int(m[1]) == offset:
                # Everything was there already: an earlier run died between the last byte and the rename.
                return self._finish(self._prefix_hash(offset), offset, resumed_from=offset, synced=False)
            self._drop_part()
            raise _StartOver
        if 400 <= status < 500:
            self._drop_part()
            raise DownloadError(self.error(what))
        if status >= 500:
            raise _Transient(what)
        length = _int_header(resp, "Content-Length")
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m[1]) != offset:
                # Not the range asked for: start again with the whole file.
                self._drop_part()
                raise _Transient(f"{what} for an unexpected range ({resp.headers.get('Content-Range')!r})")
            total = int(m[3]) if m[3] != "*" else (offset + length if length is not None else None)
        elif status == 200:
            # The server ignores ranges (or there was nothing to resume): the body is the whole file.
            offset = 0
            total = length
        else:
            raise DownloadError(self.error(f"unexpected {what}"))
        return self._stream(resp, offset, total)

    def _stream(self, resp: requests.Response, offset: int, total: int | None) -> DownloadResult:
        h = self._prefix_hash(offset) if offset else hashlib.sha256()
        size = offset
        failure: str | None = None
        complete = False
        bar = None
        if self.progress:
            bar = tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.dest.name,
                file=sys.stderr,
            )
        try:
            with self.part.open("ab" if offset else "wb") as f:
                # The raw stream, undecoded: see the Accept-Encoding above.
                chunks = resp.raw.stream(self.chunk_size, decode_content=False)
                while True:
                    try:
                        chunk = next(chunks, None)
                    except urllib3.exceptions.ReadTimeoutError:
                        failure = f"timed out after {self.timeout:g} s waiting for data"
                        break
                    except (urllib3.exceptions.HTTPError, OSError):
                        # urllib3 reports a body shorter than its Content-Length this way too.
                        failure = "the connection broke"
                        break
                    if chunk is None:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                complete = failure is None and (total is None or size >= total)
                if complete:
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            if bar is not None:
                bar.close()
            # Kept for the next attempt's resume; it is checked against the .part's size then.
            self._hash, self._hashed = h, size
        if not complete:
            got = f"got {size} of {total} bytes" if total is not None else f"after {size} bytes"
            raise _Transient(f"{failure or 'the server closed the connection early'} ({got})")
        return self._finish(h, size, resumed_from=offset, synced=True)

    def _finish(self, h: _Hash, size: int, *, resumed_from: int, synced: bool) -> DownloadResult:
        if not synced:  # maybe written by a process that died before its fsync
            with self.part.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(self.part, self.dest)
        _fsync_dir(self.dest.parent)
        return DownloadResult(self.dest, size, h.hexdigest(), self.attempts, resumed_from)


def _int_header(resp: requests.Response, name: str) -> int | None:
    try:
        return int(resp.headers[name])
    except (KeyError, ValueError):
        return None


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error under requests' and urllib3's wrappers, e.g. ``[Errno 111] Connection refused``."""
    found: BaseException | None = None
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and not isinstance(cur, requests.RequestException | urllib3.exceptions.HTTPError):
            found = cur
        cur = cur.__cause__ or cur.__context__
    return str(found or exc)


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
