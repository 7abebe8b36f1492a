"""Atomic file writes: a temporary file beside the target, flushed, synced and renamed over it.

A reader (or a run resumed after a crash) sees either the previous file or the whole new one,
never a half-written file; a failed write removes its temporary file and raises WriteError
naming the path and the reason.
"""
import contextlib
import os
import tempfile
from typing import IO, Iterator, List

TEMP_PREFIX = ".tmp-"


class WriteError(OSError):
    pass


def _default_mode() -> int:
    """0o666 less the umask: what open() would have given the file (mkstemp makes it 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", **open_args) -> Iterator[IO]:
    """`with atomic_file(path) as f: f.write(...)`: the data replaces `path` only when the block
    ends without an exception. The folder must exist."""
    folder = os.path.dirname(path) or "."
    suffix = os.path.splitext(path)[1]
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=suffix)
    except OSError as e:
        raise WriteError(f"{path}: could not be written ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(f"{path}: could not be written ({e.strerror or e})") from None
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with atomic_file(path) as f:
        f.write(data)


def remove_temporary_files(folder: str) -> List[str]:
    """Removes the temporary files that writes cut short (by a crash or SIGKILL) left in
    `folder`; returns their paths."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed
