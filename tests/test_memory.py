"""The server's malloc settings (``serving.memory``): photos decoded and freed by several threads at
once go back to the system instead of staying in the process (a 690 MB host)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO

# Six threads each decode-and-free five 9 MB photos (as the API's and the pages' threads do), then
# the process says how much more resident memory it keeps than before.
SCENARIO = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    if sys.argv[1] == "on":
        from skin_model.serving.memory import keep_memory_down
        assert keep_memory_down()
    def rss():
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
    before = rss()
    together = threading.Barrier(6)  # every thread holds its photo at once, however they are scheduled
    def work():
        for _ in range(5):
            photo = np.ones(9_000_000, np.uint8)
            copy = bytearray(photo.tobytes())
            together.wait()
            del photo, copy
            together.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(rss() - before)
    """
)


def _kept_mb(setting: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, setting], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return float(done.stdout.strip())


def test_freed_photos_go_back_to_the_system():
    from skin_model.serving.memory import keep_memory_down

    if not keep_memory_down():
        pytest.skip("not glibc: malloc's settings do not apply")
    kept = _kept_mb("on")
    assert kept < 10  # MB
    assert _kept_mb("off") > kept + 20  # without the settings the same work keeps tens of MB


# One thread allocates, fills and frees a 4 MB array 50 times (as a forward pass's working memory),
# then the process says how many page faults that took: memory given back to the system between
# passes is faulted in again on the next.
REUSE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from skin_model.serving import memory
    if sys.argv[1] == "on":
        assert memory.keep_memory_down()
    else:  # the threshold fixed alone: glibc's trim threshold then stays at its 128 kB default
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD)
    np.ones(1_000_000, np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        work = np.ones(1_000_000, np.float32)
        del work
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def test_the_model_s_working_memory_is_reused_not_given_back_each_time():
    from skin_model.serving.memory import keep_memory_down

    if not keep_memory_down():
        pytest.skip("not glibc: malloc's settings do not apply")

    def faults(setting: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", REUSE, setting], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
        )
        return int(done.stdout.strip())

    kept = faults("on")
    assert kept < 2_000  # 50 passes of 1,000 pages each would be 50,000
    assert faults("trim left at its default") > 10 * max(kept, 100)
