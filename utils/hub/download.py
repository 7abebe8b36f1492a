"""One URL (https, http or file://) into a partial file, resuming what an earlier try left there, with
a progress bar; every failure is one FetchError line."""
import errno
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlparse

from utils.checkpoint import CheckpointError
from utils.progress import ProgressBar, mebibytes

CHUNK_BYTES = 2 ** 20
TIMEOUT_S = 30
# A download's progress goes to a log as a line per tenth of the file.
LOG_EVERY = 0.1
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


class FetchError(CheckpointError):
    """A released model that could not be fetched: one line saying what failed and what to do."""


class DiskFull(FetchError):
    pass


class Interrupted(FetchError):
    """The transfer stopped part way; what came is kept for the next try to resume."""

    def __init__(self, url: str, done: str, why: str):
        super().__init__(f"the download from {shown(url)} stopped after {done} ({why}); run the same command again "
                         "to resume it")


def write_problem(path: str, error: OSError) -> FetchError:
    """The FetchError for a failed write to `path`: DiskFull where the disk or quota is full."""
    if error.errno in DISK_FULL:
        return DiskFull(f"no space left to write {path} ({error.strerror}); free some space or set MATTING_CACHE to "
                        "a folder on another disk")
    return FetchError(f"cannot write {path} ({error.strerror or error})")


def shown(url: str) -> str:
    """A URL as messages name it: a file:// URL (a mirror folder's file) as its path."""
    parsed = urlparse(url)
    return urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url


def open_url(url: str, have: int) -> http.client.HTTPResponse:
    """The response to GET `url`, asking for the bytes from `have` on where have > 0."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is as long as the file, or longer: start again
            return open_url(url, 0)
        raise FetchError(f"{url} answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
        if urlparse(url).scheme == "file":
            raise FetchError(f"{shown(url)}: {reason}") from None
        raise FetchError(f"cannot reach {urlparse(url).hostname} ({reason}): offline?") from None
    except (socket.timeout, http.client.HTTPException, OSError) as e:
        raise FetchError(f"cannot reach {urlparse(url).hostname} ({e or type(e).__name__}): offline?") from None


def resumed_from(response, have: int) -> Optional[int]:
    """The file's total size where the response carries the rest of it from byte `have` on (HTTP
    206 with a Content-Range starting there); None where it carries the whole file."""
    match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if getattr(response, "status", None) != 206 or not match or int(match.group(1)) != have:
        return None
    return int(match.group(2)) if match.group(2) != "*" else -1


def download(url: str, partial: str, desc: str, stream=None) -> None:
    """Fetches `url` into the file `partial`, resuming from the bytes already there where the
    server honours a Range request (else starting again). FetchError where the server cannot be
    reached or refuses; Interrupted where the transfer stops part way (its bytes stay for the next
    try); DiskFull, after removing the partial file, where the disk is full."""
    have = os.path.getsize(partial) if os.path.isfile(partial) else 0
    response = open_url(url, have)
    with response:
        total = resumed_from(response, have) if have else None
        if total is None:
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else -1
        bar = ProgressBar(total if total >= 0 else None, desc, stream, mebibytes, LOG_EVERY, initial=have)
        try:
            out = open(partial, "ab" if have else "wb")
        except OSError as e:
            raise write_problem(partial, e) from None
        try:
            with out:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        raise Interrupted(url, mebibytes(have), str(e) or type(e).__name__) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    have += len(chunk)
                    bar.show(have)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            bar.close()
            os.unlink(partial)
            raise write_problem(partial, e) from None
        except Interrupted:
            bar.close()
            raise
    if 0 <= total != have:
        bar.close()
        raise Interrupted(url, f"{mebibytes(have)} of {mebibytes(total)}", "the connection closed")
    if total < 0:
        bar.close()
