"""Stopping a training run on SIGINT / SIGTERM without losing it.

The training process records the first stop signal, finishes what it is doing, saves and
exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), the shell's convention,
so that a wrapper or a scheduler can tell a stopped run from a finished one.

Its data-loading workers ignore both signals: a signal sent to the whole process group (a
terminal's Ctrl-C, `timeout`, torchrun, a cluster's pre-emption) must not kill them before
the last step is saved. They are started with the signals blocked, so that no signal reaches
them between their birth and the moment they ignore it.
"""
import contextlib
import signal
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Records the first stop signal this process receives once `install` has run."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.previous = {}

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


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """128 + the signal number, as a shell reports a process the signal ended."""
    return 128 + signum


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Holds the stop signals back in this thread for the block (one that arrives meanwhile is
    delivered at its end). Processes started inside inherit the block."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """For a worker process: ignore the stop signals from now on, including any held back."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
