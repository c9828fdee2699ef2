"""Keep the server's resident memory near what it uses (Streamlit Community Cloud allows 690 MB).

glibc's malloc, left to itself, holds freed memory apart in two ways that a server decoding
uploads meets at once:
- **arenas**: each thread that allocates gets its own (up to 8 per core), and memory freed in
  one is not reused by another;
- **the mmap threshold**: a large block (a decoded photo, a request body) is mapped apart and
  returned to the system when freed, but each such free raises the threshold to the block's size
  (up to 32 MB), so the next photos of that size come from an arena, which keeps them.
Both are fixed here, once, before the server's threads start. Fixing the threshold also fixes the
heap's trim threshold (glibc stops adjusting both), which is set too: at its 128 kB default, the
memory of every forward pass went back to the system and was faulted in again on the next
(+25 ms an answer, measured). No-op off glibc.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 8 << 20  # photos and bodies (8 MB and more) are mapped apart and given back when freed
TRIM_THRESHOLD = 32 << 20  # a heap gives its free top back past 32 MB: the model's working memory stays


def keep_memory_down() -> bool:
    """Set glibc's malloc as the module says; True if it took (False off glibc)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all(mallopt(parameter, value) for parameter, value in settings)
