"""glibc malloc, told to give large blocks back: processes here handle messages of megabytes.

glibc serves a request of at least 128 KiB with a mapping of its own, unmapped when freed, but
raises that threshold to the size of each such block freed (up to 32 MiB). A snapshot at
10,000 signed names is a 10 MB message: after the first one is freed, every later snapshot,
its pipe buffers and its encodings come from the heap, where freed blocks stay resident (the
signer kept 3.6 MiB more). A fixed threshold keeps them mapped and returned on free.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt(3) parameter numbers, from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's default, made fixed
# glibc's malloc_trim(pad): returns free heap pages to the system; absent from other C
# libraries (musl), where there is nothing to call.
_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)


def return_large_blocks() -> bool:
    """Fix malloc's mmap threshold; False where the C library is not glibc (nothing done)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the symbols the interpreter is linked with
    except (OSError, AttributeError):
        return False  # another C library (musl has no mallopt): its own policy stands
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> bool:
    """Give the C heap's free pages back to the system, after a large message was handled;
    False where the C library has no malloc_trim (nothing done). Blocks below the threshold
    above (zlib's buffers, a decoded message's small objects) stay on the heap when freed,
    and glibc keeps their pages resident unless told."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
