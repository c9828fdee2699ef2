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

Then a budget (``MemoryBudget``): the API decodes an upload only while the server's resident
memory, the decodings already under way and this one's (``inputs.decoding_bytes``) fit under the
server's memory limit, less room for a page's answer; otherwise 503 with ``Retry-After``. The limit
is ``SKIN_MODEL_MEMORY_LIMIT_MB``, else the container's own (cgroup), else none: a burst of big
uploads is then refused instead of passing the host's limit, which would end every session.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

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


# Left free for the pages: one API upload beside a page's answer grew the server by +28 to +66 MB
# (benchmarks/stress_api.py, 1 client with a page session).
PAGE_ROOM = 50 << 20
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def resident_bytes() -> int | None:
    """This process's resident memory (Linux); None where it cannot be read."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def container_limit() -> int | None:
    """The memory limit of this process's container (cgroup v2, else v1); None where it has none."""
    for path in CGROUP_LIMITS:
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 50:  # v1 writes "no limit" as a huge number, v2 as "max"
            return int(value)
    return None


def give_back_free_memory() -> None:
    """Free pages inside glibc's heaps go back to the system (malloc_trim); no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryShort(Exception):
    """The work would pass the memory budget; try again shortly."""


class MemoryBudget:
    """Admits work while the process's resident memory, the work already admitted and this work's
    cost fit under ``limit`` bytes (None: admits everything). Thread-safe: the API's decoding
    threads ask it at once. Over the limit, it gives free memory back once and looks again."""

    def __init__(
        self,
        limit: int | None,
        resident: Callable[[], int | None] = resident_bytes,
        give_back: Callable[[], None] = give_back_free_memory,
    ):
        self.limit, self.resident, self.give_back = limit, resident, give_back
        self.admitted = 0
        self._lock = threading.Lock()

    @classmethod
    def for_server(cls, limit: int | None) -> MemoryBudget:
        """The budget of a server under ``limit`` (default: its container's), less ``PAGE_ROOM``."""
        limit = limit if limit is not None else container_limit()
        return cls(None if limit is None else limit - PAGE_ROOM)

    def _fits(self, cost: int) -> bool:
        resident = self.resident()
        return resident is None or resident + self.admitted + cost <= self.limit

    @contextmanager
    def holding(self, cost: int):
        """Admits ``cost`` bytes of work for the ``with`` block, or raises ``MemoryShort``."""
        if self.limit is not None:
            with self._lock:
                if not self._fits(cost):
                    self.give_back()
                    if not self._fits(cost):
                        raise MemoryShort
                self.admitted += cost
        try:
            yield
        finally:
            if self.limit is not None:
                with self._lock:
                    self.admitted -= cost
