"""Large buffers go back to the system when freed, so a 25 MB message is not kept twice.

glibc serves a large allocation with its own mapping, returned at free(), until
the first such block is freed: then it raises its threshold to that size, and
later blocks of the same size come from the heap, where freed memory stays in
the process.  A proxy that translates a 25 MB message frees the request's bytes
before it builds the Mail API request; with the raised threshold both stay
resident.  Fixing the threshold at glibc's own starting value keeps it.
"""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD = 128 * 1024  # glibc's default before it adjusts


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
