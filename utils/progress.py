"""A dependency-free progress bar for long loops (stderr; one line per step when not a terminal)."""
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: Optional[int] = None, desc: str = "",
             stream=None) -> Iterator[T]:
    stream = stream or sys.stderr
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    interactive = stream.isatty()
    start = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done)
        line = f"{desc} {done}/{total} [{elapsed:.0f}s elapsed, {eta:.0f}s left]"
        if interactive:
            width = 30
            filled = int(width * done / max(total, 1))
            stream.write(f"\r{desc} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                         f"{elapsed:.0f}s<{eta:.0f}s")
            if done == total:
                stream.write("\n")
        else:
            stream.write(line + "\n")
        stream.flush()
