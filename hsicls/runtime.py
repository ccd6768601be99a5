"""Process-level performance settings for CPU inference and training.

glibc returns large freed blocks to the OS (``munmap``/trim) and then faults fresh pages in on
the next batch; with activation buffers of tens of MB per batch that costs more than the
convolutions. Raising the mmap and trim thresholds keeps those buffers in the heap (measured
here: a 1x1 convolution of a 1024-patch batch went from 168 ms to 64 ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = {"malloc": False}


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's malloc trim/mmap thresholds (no-op elsewhere). Returns True if applied."""
    if _done["malloc"] or not sys.platform.startswith("linux"):
        return _done["malloc"]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):
        ok = False
    _done["malloc"] = ok
    return ok
