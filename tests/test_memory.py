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


# The memory budget (``MemoryBudget``): each decoding of the API must fit, else 503.
MB = 2**20


class Resident:
    """A process's resident memory as the test sets it, and how often free memory was given back."""

    def __init__(self, mb: float, after_give_back: float | None = None):
        self.mb, self.after, self.given_back = mb, after_give_back, 0

    def __call__(self) -> int:
        return int(self.mb * MB)

    def give_back(self) -> None:
        self.given_back += 1
        if self.after is not None:
            self.mb = self.after


def _budget(limit_mb, resident: Resident):
    from skin_model.serving.memory import MemoryBudget

    return MemoryBudget(None if limit_mb is None else limit_mb * MB, resident, resident.give_back)


@pytest.mark.parametrize(
    ("resident_mb", "after_mb", "cost_mb", "admitted", "given_back"),
    [
        (500, None, 100, True, 0),  # fits: nothing given back
        (500, None, 150, False, 1),  # does not fit, even after giving free memory back
        (600, 480, 100, True, 1),  # fits once free memory went back
        (640, None, 0, True, 0),  # at the limit exactly
    ],
)
def test_the_budget_admits_what_fits_and_gives_free_memory_back_before_it_refuses(
    resident_mb, after_mb, cost_mb, admitted, given_back
):
    from skin_model.serving.memory import MemoryShort

    resident = Resident(resident_mb, after_mb)
    budget = _budget(640, resident)
    if admitted:
        with budget.holding(cost_mb * MB):
            assert budget.admitted == cost_mb * MB
    else:
        with pytest.raises(MemoryShort), budget.holding(cost_mb * MB):
            pass
    assert (resident.given_back, budget.admitted) == (given_back, 0)


def test_work_admitted_counts_until_it_ends_even_when_it_fails():
    from skin_model.serving.memory import MemoryShort

    budget = _budget(640, Resident(500))
    with budget.holding(100 * MB):
        with pytest.raises(MemoryShort), budget.holding(100 * MB):  # 500 + 100 + 100 > 640
            pass
        with pytest.raises(ValueError), budget.holding(30 * MB):
            raise ValueError
        assert budget.admitted == 100 * MB
    with budget.holding(130 * MB):  # the first has ended
        pass


def test_without_a_limit_everything_is_admitted_and_memory_never_read():
    from skin_model.serving.memory import MemoryBudget

    def unread() -> int:
        raise AssertionError("read without a limit")

    budget = MemoryBudget(None, unread, unread)
    with budget.holding(10_000 * MB):
        pass


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"memory.max": "734003200\n"}, 734003200),  # cgroup v2
        ({"memory.max": "max\n"}, None),
        ({"memory.limit_in_bytes": "9223372036854771712\n"}, None),  # cgroup v1 with no limit
        ({"memory.limit_in_bytes": "1073741824\n"}, 1073741824),
        ({}, None),
    ],
)
def test_the_limit_is_the_container_s_where_it_has_one(tmp_path, monkeypatch, files, limit):
    from skin_model.serving import memory

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(memory, "CGROUP_LIMITS", (tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"))
    assert memory.container_limit() == limit
    budget = memory.MemoryBudget.for_server(None)
    assert budget.limit == (None if limit is None else limit - memory.PAGE_ROOM)
    monkeypatch.setenv("SKIN_MODEL_MEMORY_LIMIT_MB", "690")  # the setting wins over the container
    from skin_model.config import settings

    assert memory.MemoryBudget.for_server(settings().memory_limit).limit == 690 * MB - memory.PAGE_ROOM


def test_the_api_refuses_a_decoding_that_does_not_fit_with_503_and_answers_one_that_does(tiny_model):
    from starlette.testclient import TestClient

    from skin_model.serving.api import create_api

    from .conftest import encode, synthetic_lesion

    image = encode(synthetic_lesion("nv", seed=3), "PNG")
    form = {"image": ("lesion.png", image, "image/png")}
    short = Resident(690)  # at the limit: any decoding passes it
    refused = TestClient(create_api(lambda: tiny_model, 2 * MB, memory=_budget(690, short))).post(
        "/predict", files=form
    )
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert refused.json()["error"] == "busy" and short.given_back == 1
    answered = TestClient(create_api(lambda: tiny_model, 2 * MB, memory=_budget(690, Resident(400)))).post(
        "/predict", files=form
    )
    assert answered.status_code == 200 and answered.json()["probabilities"]
