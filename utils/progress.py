"""A dependency-free progress bar for long loops and downloads (stderr; plain lines when not a terminal)."""
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
BAR_WIDTH = 30


def mebibytes(count: float) -> str:
    return f"{count / 2 ** 20:.1f} MiB"


class ProgressBar:
    """One progress display on `stream` (stderr): a bar redrawn in place on a terminal; elsewhere (a
    log) a plain line per update, or only each time another `every` fraction of `total` is done.
    `unit` formats the counts (str: items; mebibytes: bytes); `initial` is what was done before
    (a resumed download), left out of the rate. A None total shows the count alone, on a terminal."""

    def __init__(self, total: Optional[float], desc: str = "", stream=None, unit: Callable[[float], str] = str,
                 every: float = 0.0, initial: float = 0):
        self.total, self.desc, self.unit, self.every, self.initial = total, desc, unit, every, initial
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.start = time.monotonic()
        self.next_line = initial + every * (total or 0)

    def show(self, done: float) -> None:
        elapsed = time.monotonic() - self.start
        finished = self.total is not None and done >= self.total
        if self.total is None:
            counts, eta, filled = self.unit(done), "", None
        else:
            rate = (done - self.initial) / elapsed if elapsed > 0 and done > self.initial else 0
            left = (self.total - done) / rate if rate else 0
            counts, eta = f"{self.unit(done)}/{self.unit(self.total)}", f"{left:.0f}s"
            filled = int(BAR_WIDTH * done / max(self.total, 1))
        if self.interactive:
            bar = f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]" if filled is not None else ""
            self.stream.write(f"\r{self.desc}{bar} {counts} {elapsed:.0f}s" + (f"<{eta}" if eta else ""))
            if finished:
                self.stream.write("\n")
        elif self.total is not None and (done >= self.next_line or finished):
            self.stream.write(f"{self.desc} {counts} [{elapsed:.0f}s elapsed" + (f", {eta} left]" if eta else "]")
                              + "\n")
            self.next_line = done + self.every * (self.total or 0)
        self.stream.flush()

    def close(self) -> None:
        """Ends the bar's line on a terminal where it did not reach its total (a failed download)."""
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def progress(items: Iterable[T], total: Optional[int] = None, desc: str = "",
             stream=None) -> Iterator[T]:
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    bar = ProgressBar(total, desc, stream)
    for done, item in enumerate(items, 1):
        yield item
        bar.show(done)
