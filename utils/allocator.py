"""Keep freed memory in the process for reuse (glibc).

glibc gives every allocation above 32 MB a fresh mmap and unmaps it on free, so each large
tensor (a GCA score block, a stripe's feature map) pays page faults and the kernel's zeroing of
all its pages again. At 3840x2160 the CPU inference spent about half of its time in the kernel
that way. With mmap off for large blocks (M_MMAP_MAX = 0) and a high trim threshold, freed
memory stays in the heap and the next tensor of that size reuses it: 3840x2160 ran in 66 s
instead of 109 s, at a fifth more peak RSS (3.0 GB instead of 2.5; heap fragmentation). The
same idea as running PyTorch with jemalloc or tcmalloc, without a preload. One arena
(M_ARENA_MAX = 1): glibc otherwise gives the threads that allocate under contention (torch's
workers) arenas of their own, whose freed memory the next tensor of the main thread cannot
reuse; 3840x2160's peak RSS was 2.72 to 3.11 GiB in five runs with them and 2.31 to 2.80 GiB in
six with one (docs/performance.md), at the same speed. The entry points
(demo.py, main.py, networks.benchmark, utils.evaluation.evaluate, utils.evaluation.benchmark) apply it when
run as programs.
"""
import ctypes
import sys
from typing import Callable, Optional

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD_BYTES = 2 ** 31 - 1


def _glibc(name: str, argtypes: list) -> Optional[Callable]:
    """glibc's function `name` with its argument types, or None where there is none (not Linux,
    or another C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    return function


def reuse_freed_memory() -> bool:
    """Applies the glibc settings above to this process; returns False where they do not apply
    (not Linux, or a C library without mallopt)."""
    mallopt = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    return all([mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), mallopt(M_ARENA_MAX, 1)])


def release_freed_memory() -> bool:
    """Gives the pages of the freed memory this process keeps back to the system (glibc's
    malloc_trim: the heap's top and the whole pages inside its free chunks), so that its resident
    memory is what it uses; the pages are faulted in again when reused. What a memory cap
    (utils.memory.set_memory_cap) does before each working set is sized: the heap otherwise keeps
    freed whole-image maps that a later map of another size cannot always reuse. False where it
    does not apply (not Linux, or a C library without malloc_trim)."""
    malloc_trim = _glibc("malloc_trim", [ctypes.c_size_t])
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True
