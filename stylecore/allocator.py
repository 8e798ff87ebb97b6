"""Keep freed tensor memory in the process instead of handing it back to the kernel.

On the CPU every evaluation allocates and frees the same few dozen feature-map-sized
buffers (up to 64 MiB each at 512 px). glibc serves blocks that large with a fresh
mmap and unmaps them on free, so every buffer is page-faulted and zeroed by the kernel
again at every evaluation, a sizeable share of an evaluation at 512 px (BENCHMARKS.md,
"The search's directions", direction 9). Serving them from the heap, and trimming it
only beyond a threshold, lets the next evaluation reuse the same pages.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the top of the heap beyond this is still returned to the kernel, so a
# process that once needed much more (a 1024 px synthesis) gives most of it back; larger
# thresholds measured alike at 512 px (BENCHMARKS.md, direction 9).
TRIM_THRESHOLD_BYTES = 256 << 20

_retaining = False


def retain_freed_memory() -> bool:
    """Serve large allocations from the heap and keep up to `TRIM_THRESHOLD_BYTES` of it.

    Process-wide and idempotent; True if in effect. A no-op returning False where the C
    library is not glibc (macOS, musl), which manage large blocks their own way.
    """
    global _retaining
    if _retaining:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    _retaining = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _retaining


def release_retained_memory() -> None:
    """Hand every whole free page of the heap back to the kernel, if retention is on.

    What a synthesis calls between pyramid levels and after its last: a level's buffers
    (4x the area of the last level's) do not fit in the holes the last one left, so
    without this the holes stay resident beside them (BENCHMARKS.md, "Memory"). Within a
    level every evaluation reuses the same pages.
    """
    if _retaining:
        ctypes.CDLL(None).malloc_trim(0)
