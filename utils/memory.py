"""Running out of memory on one item: telling an allocation failure from other errors, how much
it asked for, and how much this process may still use, so that a batch job names the item and
goes on.

Allocation failures come as MemoryError (numpy's "Unable to allocate 1.21 GiB ..." included) or
as a RuntimeError from torch: "DefaultCPUAllocator: can't allocate memory: you tried to allocate
N bytes" on the CPU, torch.OutOfMemoryError ("CUDA out of memory. Tried to allocate 2.00 GiB")
on a GPU. torch is not imported here: its errors are told by their messages.
"""
import contextlib
import ctypes
import math
import re
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:  # torch itself is imported where used: the evaluation's workers import this module
    import torch

from utils.allocator import release_freed_memory

# Parts of the messages of torch's allocation failures (CPU allocator, CUDA and MPS).
RUNTIME_MARKERS = ("can't allocate memory", "DefaultCPUAllocator", "out of memory")
UNITS = {"b": 1, "bytes": 1, "kb": 1e3, "kib": 2 ** 10, "mb": 1e6, "mib": 2 ** 20, "gb": 1e9, "gib": 2 ** 30,
         "tb": 1e12, "tib": 2 ** 40, "pib": 2 ** 50, "eib": 2 ** 60}
ATTEMPT = re.compile(r"(?:tried to allocate|unable to allocate)\s+([0-9][0-9.]*)\s*([a-z]+)", re.I)
AMOUNT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-z]+)\s*", re.I)
# The user's cap on this process's memory (set_memory_cap), None for none.
_cap_bytes: Optional[int] = None


class OutOfMemory(RuntimeError):
    """An item that ran out of memory; the message names it, its size and the allocation."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a failed allocation rather than a bug or bad input."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in RUNTIME_MARKERS)


def attempted_bytes(message: str) -> Optional[int]:
    """The size of the allocation that failed, as torch's and numpy's messages give it, or None."""
    match = ATTEMPT.search(message)
    if not match or match.group(2).lower() not in UNITS:
        return None
    try:
        return int(float(match.group(1)) * UNITS[match.group(2).lower()])
    except ValueError:
        return None


def parse_bytes(text: str) -> int:
    """'3GiB', '2.5 GB', '512MiB' -> bytes; ValueError naming the units for anything else."""
    match = AMOUNT.fullmatch(text)
    if not match or match.group(2).lower() not in UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an amount of memory: give a number and a unit, e.g. 3GiB or 2500MB "
                         f"(units: {', '.join(unit for unit in UNITS if unit != 'b')})")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def set_memory_cap(text: Optional[str], source: str = "the memory cap") -> Optional[int]:
    """Caps this process's memory at `text` ('3GiB'; None or '' for no cap), the bytes or None:
    every working-set budget (networks.stripes.memory_budget) is then sized to what the cap leaves
    beyond what the process uses (cpu_memory_left). ValueError naming `source` (a flag or a config
    key) for a bad amount."""
    global _cap_bytes
    try:
        _cap_bytes = parse_bytes(text) if text else None
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return _cap_bytes


def _status_bytes(field: str) -> Optional[int]:
    """A memory figure of this process from /proc/self/status ('VmRSS', 'VmHWM', 'VmSize'), in
    bytes, or None where it cannot be read (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
    except (OSError, ValueError, StopIteration):
        return None


def _resident_bytes() -> Optional[int]:
    """This process's resident memory now (VmRSS), or None where /proc cannot be read."""
    return _status_bytes("VmRSS")


def format_bytes(count: float) -> str:
    """'512 MiB', '3.0 GiB', '1024.0 TiB'."""
    if count >= 2 ** 40:
        return f"{count / 2 ** 40:.1f} TiB"
    if count >= 2 ** 30:
        return f"{count / 2 ** 30:.1f} GiB"
    return f"{count / 2 ** 20:.0f} MiB"


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> Optional[int]:
    """What an address-space limit (ulimit -v, prlimit --as) leaves this process, or None."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    used = _status_bytes("VmSize")
    return None if used is None else max(limit - used, 0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_free_bytes() -> int:
    """Bytes glibc's malloc holds free inside this process (kept for reuse: utils.allocator), 0
    where that cannot be read: an earlier image's memory, free for the next one though the
    machine and an address-space limit count it as used."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return 0
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def _cap_left() -> Optional[int]:
    """What the user's cap leaves beyond the memory this process uses, or None without a cap. The
    freed memory the process keeps is given back first (utils.allocator.release_freed_memory), so
    that its resident memory is what it uses and the peak stays with what is in use."""
    if _cap_bytes is None:
        return None
    release_freed_memory()
    resident = _resident_bytes()
    return max(_cap_bytes - resident, 0) if resident is not None else _cap_bytes


def cpu_memory_left() -> Optional[int]:
    """Bytes this process may still allocate on the CPU: the smallest of the machine's available
    memory and what an address-space limit leaves, each plus what malloc holds free in the process,
    and what the user's cap (set_memory_cap) leaves; None where none of them can be read."""
    free_inside = _malloc_free_bytes()
    limits = [v + free_inside for v in (_meminfo_available(), _address_space_left()) if v is not None]
    cap_left = _cap_left()
    known = limits + ([cap_left] if cap_left is not None else [])
    return min(known) if known else None


# A model's estimate of its peak memory for one image: (height, width) -> bytes, or None.
PeakEstimate = Callable[[int, int], Optional[int]]


def fitting_size(width: int, height: int, estimate: PeakEstimate, available: int) -> Optional[str]:
    """'WxH', the largest size of the image's shape whose estimate fits in `available` bytes, or
    None when none of at least 64 px does."""
    low, high = 0.0, 1.0
    for _ in range(30):  # the estimate grows with the area: bisect the scale
        middle = (low + high) / 2
        need = estimate(max(1, round(height * middle)), max(1, round(width * middle)))
        if need is not None and need <= available:
            low = middle
        else:
            high = middle
    fit_w, fit_h = math.floor(width * low), math.floor(height * low)
    return f"{fit_w}x{fit_h}" if min(fit_w, fit_h) >= 64 else None


def memory_shortfall(width: int, height: int, estimate: Optional[PeakEstimate], available: Optional[int]) -> str:
    """'' where the model gives no estimate or it fits in `available` bytes, else 'this model
    needs about 27.3 GiB at 9000x11000 and this process has about 7.1 GiB left: up to about
    4500x5500 (the same shape) fits'."""
    need = estimate(height, width) if estimate else None
    if need is None or available is None or need <= available:
        return ""
    fits = fitting_size(width, height, estimate, available)
    return (f"this model needs about {format_bytes(need)} at {width}x{height} and this process has about "
            f"{format_bytes(available)} left: " + (f"up to about {fits} (the same shape) fits" if fits
                                                    else "no useful size of this shape fits"))


def preflight_warning(width: int, height: int, estimate: Optional[PeakEstimate]) -> str:
    """The shortfall before a forward pass, with the memory left now, as a warning; '' if none."""
    shortfall = memory_shortfall(width, height, estimate, cpu_memory_left() if estimate else None)
    return f"{shortfall}; it may run out of memory" if shortfall else ""


def out_of_memory_message(item: str, width: int, height: int, error: BaseException, shortfall: str = "") -> str:
    """'<item>: out of memory on this 9000x11000 image (it tried to allocate 11.8 GiB more); ...'."""
    attempted = attempted_bytes(str(error))
    tried = f" (it tried to allocate {format_bytes(attempted)} more)" if attempted else ""
    return (f"{item}: out of memory on this {width}x{height} image{tried}; "
            + (f"{shortfall}; " if shortfall else "") + "scale it down, or run it where more memory is free")


@contextlib.contextmanager
def named_out_of_memory(item: str, width: int, height: int,
                        estimate: Optional[PeakEstimate] = None) -> Iterator[None]:
    """Turns an allocation failure inside the block into OutOfMemory naming `item`, its size, the
    allocation and, from the model's `estimate`, the size that would fit in the memory left when
    the block began; other errors pass unchanged."""
    available = cpu_memory_left() if estimate else None
    try:
        yield
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, OutOfMemory) or not is_out_of_memory(e):
            raise
        shortfall = memory_shortfall(width, height, estimate, available)
        raise OutOfMemory(out_of_memory_message(item, width, height, e, shortfall)) from None


def reset_peak_memory(device: "torch.device") -> bool:
    """Starts a new peak: CUDA's allocator statistics, or on the CPU the process's peak resident
    memory (Linux's VmHWM, through /proc/self/clear_refs). False where it cannot be reset."""
    if device.type == "cuda":
        import torch
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_bytes(device: "torch.device") -> int:
    """Bytes: torch.cuda.max_memory_allocated on a GPU; the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        import torch
        return torch.cuda.max_memory_allocated(device)
    peak = _status_bytes("VmHWM")
    if peak is None:
        import resource  # POSIX only; ru_maxrss is in KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak
