"""Keep the server's resident memory near what it uses (Streamlit Community Cloud allows 690 MB).

glibc's malloc, left to itself, holds freed memory apart in two ways that a server decoding
uploads meets at once:
- **arenas**: each thread that allocates gets its own (up to 8 per core), and memory freed in
  one is not reused by another;
- **the mmap threshold**: a large block (a decoded photo, a request body) is mapped apart and
  returned to the system when freed, but each such free raises the threshold to the block's size
  (up to 32 MB), so the next photos of that size come from an arena, which keeps them.
Both are fixed here, once, before the server's threads start. No-op off glibc.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers (malloc.h)
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 1 << 20  # blocks of 1 MB and more are mapped apart and given back when freed


def keep_memory_down(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's malloc as the module says; True if it took (False off glibc)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # A fixed threshold also stops it from rising (mallopt turns the adjustment off).
    return bool(mallopt(M_ARENA_MAX, arenas)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
