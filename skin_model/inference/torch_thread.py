"""One thread per process for all of the predictor's torch work.

Why: torch keeps an OpenMP thread pool per calling thread. Streamlit runs every
script run on a new thread, each of which used to bring its own pool (up to
~50 MB more memory), and on 2 cores two live pools throttle each other (a forward
pass ran ~4x slower). Calls queue on this thread, which also keeps one call's
Grad-CAM hooks from another's.

Safety: the worker is a daemon thread (a stuck call cannot hang interpreter
exit); a forked child starts a fresh worker (``os.register_at_fork``); the queue
is bounded and every wait has a timeout, so a caller gets a clear
``TorchThreadError`` instead of a hang; a call from the worker itself runs inline.
Decoding runs on the caller's thread; an answer's numeric work (the network, the photo's measures
for the quality check) runs here.

Lanes: within one call, the ensemble's members run side by side on single-threaded lanes, one
per core (``map_lanes``). A member on one image is small work, made of ~150 short operations;
a 2-thread OpenMP pool spends more on waking its threads for each operation than it saves
(one member, one image: 6 ms on one thread, 16 ms on two). Five members on two single-threaded
lanes answer in 0.07 s instead of 0.13 s (docs/performance.md). A lane never starts an OpenMP
pool of its own, so the pools do not throttle each other.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from skin_model.config import settings

THREAD_NAME = "skin-model-torch"
LANE_NAME = "skin-model-lane"
MAX_WAITING = 64  # calls queued at once; more are refused at once
TIMEOUT_S = float(os.environ.get("SKIN_MODEL_TORCH_TIMEOUT", "120"))


class TorchThreadError(RuntimeError):
    """The model's thread is overloaded or did not answer in time."""


def _cores() -> int:
    """The cores this process may run on: torch's own default number of threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Lanes:
    """``count`` daemon threads, each single-threaded for torch, taking work from one queue: daemon,
    as the torch thread is, so that a stuck call cannot hang interpreter exit."""

    def __init__(self, count: int):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._work, name=f"{LANE_NAME}_{i}", daemon=True).start()

    def _work(self) -> None:
        import torch

        torch.set_num_threads(1)  # this thread's own OpenMP setting: no pool of its own
        while True:
            future, fn, item = self._queue.get()
            try:
                future.set_result(fn(item))
            except BaseException as err:  # handed to map, which re-raises it
                future.set_exception(err)

    def map(self, fn, items: list) -> list:
        futures = [Future() for _ in items]
        for future, item in zip(futures, items):
            self._queue.put((future, fn, item))
        return [future.result() for future in futures]


class TorchThread:
    def __init__(self, timeout_s: float = TIMEOUT_S, max_waiting: int = MAX_WAITING, lanes: int | None = None):
        self.timeout_s, self.max_waiting = timeout_s, max_waiting
        self.lanes = lanes
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=self.max_waiting)
        self._thread: threading.Thread | None = None
        self._lanes: _Lanes | None = None

    def map_lanes(self, fn, items) -> list:
        """``[fn(item) for item in items]``, the items side by side on the single-threaded lanes
        (``lanes``, default one per core), in order; the first exception is raised here.

        For work inside one call of the torch thread, whose lanes are its helpers: grad and
        inference modes are per thread, so ``fn`` sets its own."""
        items = list(items)
        if len(items) < 2 or self.lane_count() < 2:
            return [fn(item) for item in items]
        return self._started_lanes().map(fn, items)

    def on_lane(self, fn, *args):
        """``fn(*args)`` on one single-threaded lane: for small work alone (one photo's quality
        check), which then gives the same numbers as beside the members, without the wake-ups of
        the torch thread's own pool. Inline where there are no lanes."""
        if self.lane_count() < 2:
            return fn(*args)
        return self._started_lanes().map(lambda a: fn(*a), [args])[0]

    def _started_lanes(self) -> _Lanes:
        with self._lock:
            if self._lanes is None:
                self._lanes = _Lanes(self.lane_count())
            return self._lanes

    def lane_count(self) -> int:
        return self.lanes or settings().num_threads or _cores()

    def _worker(self) -> None:
        while True:
            future, fn, args, kwargs = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as err:  # handed to the caller, who re-raises it
                    future.set_exception(err)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the torch thread (inline if already there)."""
        return self._call(fn, args, kwargs, self.timeout_s)

    def run_to_the_end(self, fn, *args, **kwargs):
        """``run`` without the timeout: for work that must finish once rather than be asked again
        (loading the model; a timed-out load would go on loading while the next call loads anew)."""
        return self._call(fn, args, kwargs, None)

    def _call(self, fn, args, kwargs, timeout_s: float | None):
        if self.is_current():
            return fn(*args, **kwargs)
        self._ensure_started()
        future: Future = Future()
        try:
            self._queue.put_nowait((future, fn, args, kwargs))
        except queue.Full:
            raise TorchThreadError("The model is busy with too many requests; please try again shortly.") from None
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TorchThreadError(
                f"The model did not answer within {self.timeout_s:.0f} s (is a call waiting on another "
                "call to the model?)."
            ) from None


_default = TorchThread()
# A forked child has no worker thread (only the forking thread survives a fork): start afresh.
os.register_at_fork(after_in_child=_default._reset)


def on_torch_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, run on the predictor's torch thread (directly if already there)."""
    return _default.run(fn, *args, **kwargs)


def map_lanes(fn, items) -> list:
    """``TorchThread.map_lanes`` of the predictor's torch thread."""
    return _default.map_lanes(fn, items)


def lane_count() -> int:
    """``TorchThread.lane_count`` of the predictor's torch thread."""
    return _default.lane_count()


def on_lane(fn, *args):
    """``TorchThread.on_lane`` of the predictor's torch thread."""
    return _default.on_lane(fn, *args)


def on_torch_thread_to_the_end(fn, *args, **kwargs):
    """``on_torch_thread`` with no timeout (``TorchThread.run_to_the_end``)."""
    return _default.run_to_the_end(fn, *args, **kwargs)
