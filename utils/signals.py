"""Stopping a training run or a command on SIGINT / SIGTERM without losing their work.

The training process records the first stop signal, finishes what it is doing, saves and
exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), the shell's convention,
so that a wrapper or a scheduler can tell a stopped run from a finished one.

The commands that work through a folder (demo.py, utils.cutouts.cutout, utils.evaluation.evaluate,
dataloader.prepare_foreground) and the exporter stop at once instead, as Ctrl-C stops any Python
program, but with `Interrupted` rather than KeyboardInterrupt, for SIGTERM too: they catch it,
print one line (how far they got and how to finish) instead of a traceback, and exit with the
same codes. Their files are written atomically, so what they wrote is whole.

Its data-loading workers ignore both signals: a signal sent to the whole process group (a
terminal's Ctrl-C, `timeout`, torchrun, a cluster's pre-emption) must not kill them before
the last step is saved. They are started with the signals blocked, so that no signal reaches
them between their birth and the moment they ignore it.
"""
import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The first stop signal, raised where the main thread is (a BaseException, as
    KeyboardInterrupt is, so that no `except Exception` takes it for an error)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class StopRequest:
    """Records the first stop signal this process receives once `install` has run; with
    `interrupt`, also raises Interrupted for it (later ones are only recorded, so that the
    clean-up the first one starts is not cut short)."""

    def __init__(self, interrupt: bool = False) -> None:
        self.signum: Optional[int] = None
        self.previous = {}
        self.interrupt = interrupt

    def install(self) -> "StopRequest":
        self.previous = {sig: signal.signal(sig, self._record) for sig in STOP_SIGNALS}
        return self

    def uninstall(self) -> None:
        """The handlers as they were before `install` (for callers that go on, such as tests)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _record(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self.interrupt:
                raise Interrupted(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """128 + the signal number, as a shell reports a process the signal ended."""
    return 128 + signum


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Holds the stop signals back in this thread for the block (one that arrives meanwhile is
    delivered at its end). Processes started inside inherit the block, and from the main thread
    they also start with SIGINT ignored: a spawned child (multiprocessing's "spawn") does not keep
    the block, and a terminal's Ctrl-C would otherwise break its start-up, before it can set its
    own handlers, with a traceback. An ignored SIGINT survives exec, and Python then leaves it so."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        yield
    finally:
        if in_main_thread:
            # before the unblock, so that a held-back Ctrl-C reaches it (None: a handler set outside Python)
            signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_stop_signals_to_the_parent() -> None:
    """For a worker of a multiprocessing pool: ignore SIGINT (a terminal's Ctrl-C reaches the whole
    process group; the parent reports it in one line and ends the pool), keep SIGTERM's default
    (the pool ends its workers with it; they end quietly), then take any held back (see
    stop_signals_blocked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def ignore_stop_signals() -> None:
    """For a worker process: ignore the stop signals from now on, including any held back."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def run_until_stopped(run: Callable[[], int], stopped_line: Callable[[], str]) -> int:
    """run()'s exit code; a SIGINT or SIGTERM meanwhile stops it where it is (as Ctrl-C stops a
    Python program) and prints 'interrupted: ' + stopped_line() (how far it got, how to finish)
    as its one line instead of a traceback (none where that is ''); the exit code is then 128 +
    the signal (130, 143).
    What was written is whole: files are written atomically and an item's all or none."""
    stop = StopRequest(interrupt=True).install()
    try:
        return run()
    except BaseException:
        # Interrupted, or what compiled code it went through made of it (numba's dispatcher
        # returns a SystemError whose cause it is): after a stop signal, the stop's doing.
        if stop.signum is None:
            raise
        line = stopped_line()
        if line:  # '' from the processes that leave the line to another (utils.io.shards)
            # a progress bar on a terminal ends in the middle of its line
            print(("\n" if sys.stderr.isatty() else "") + f"interrupted: {line}", file=sys.stderr)
        return exit_code(stop.signum)
    finally:
        stop.uninstall()
