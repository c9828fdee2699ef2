"""The one torch thread: never a hang (fork, waiting on itself, overload), always a clear error."""

import multiprocessing
import threading
import time

import pytest

from skin_model.inference.torch_thread import (
    LANE_NAME,
    THREAD_NAME,
    TorchThread,
    TorchThreadError,
    map_lanes,
    on_torch_thread,
)


def test_calls_run_on_the_named_daemon_thread():
    worker = TorchThread()
    assert worker.run(lambda: threading.current_thread().name) == THREAD_NAME
    assert worker._thread.daemon  # a stuck call cannot hang interpreter exit
    assert worker.run(lambda: worker.run(lambda: 41) + 1) == 42  # nested: inline, no deadlock


def test_errors_reach_the_caller():
    with pytest.raises(ZeroDivisionError):
        TorchThread().run(lambda: 1 / 0)


def _in_a_forked_child(work):
    """What ``work()`` returns in a forked child of this process (which must not hang)."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=lambda: results.put(work()))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    return results.get(timeout=5)


def _thread_name():
    return threading.current_thread().name


def test_a_forked_child_gets_a_working_thread():
    assert on_torch_thread(lambda: 1) == 1  # the parent's worker exists before the fork
    assert _in_a_forked_child(lambda: on_torch_thread(_thread_name)) == THREAD_NAME


def test_waiting_on_another_call_from_the_thread_is_an_error_not_a_hang():
    """Work on the torch thread that waits for another thread calling the model used to
    deadlock the whole process; now both callers get a clear error and the thread recovers."""
    worker = TorchThread(timeout_s=1)
    inner = []

    def waits_for_a_second_caller():
        # The second caller arrives a little later, as it would in the app. Arriving at
        # the same instant, both 1 s timeouts would race: the second could time out first,
        # let this call return, and the first caller would then get an answer, not an error.
        time.sleep(0.25)
        helper = threading.Thread(target=lambda: inner.append(_try(lambda: worker.run(lambda: 1))))
        helper.start()
        helper.join(timeout=10)

    start = time.monotonic()
    with pytest.raises(TorchThreadError, match="did not answer"):
        worker.run(waits_for_a_second_caller)
    assert time.monotonic() - start < 5
    deadline = time.monotonic() + 10
    while not inner and time.monotonic() < deadline:
        time.sleep(0.05)
    assert isinstance(inner[0], TorchThreadError)
    assert worker.run(lambda: 3) == 3


def test_an_overloaded_queue_refuses_at_once():
    worker = TorchThread(timeout_s=5, max_waiting=2)
    gate, running = threading.Event(), threading.Event()

    def holds_the_thread():
        running.set()
        gate.wait()

    def call(fn):
        thread = threading.Thread(target=lambda: _try(lambda: worker.run(fn)))
        thread.start()
        return thread

    # One call running, then two waiting. The running one must be off the queue before
    # the others arrive, or the third would find the queue full and be refused itself.
    blockers = [call(holds_the_thread)]
    assert running.wait(timeout=10)
    blockers += [call(gate.wait) for _ in range(2)]
    deadline = time.monotonic() + 10
    while not worker._queue.full() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker._queue.full()
    with pytest.raises(TorchThreadError, match="busy"):
        worker.run(lambda: 1)
    gate.set()
    for b in blockers:
        b.join(timeout=10)
    assert worker.run(lambda: 2) == 2  # and it recovers


def _try(fn):
    try:
        return fn()
    except TorchThreadError as err:
        return err


def _where(item):
    import torch

    time.sleep(0.05)  # long enough for the other lane to take the next item
    return item, threading.current_thread().name, torch.get_num_threads()


def test_lanes_run_items_side_by_side_single_threaded_and_in_order():
    import torch

    before = torch.get_num_threads()
    worker = TorchThread(lanes=2)
    results = worker.run(lambda: worker.map_lanes(_where, range(5)))
    assert [item for item, _, _ in results] == list(range(5))
    assert {name.rsplit("_", 1)[0] for _, name, _ in results} == {LANE_NAME}
    lanes = [t for t in threading.enumerate() if t.name in {name for _, name, _ in results}]
    assert lanes and all(t.daemon for t in lanes)  # a stuck call cannot hang interpreter exit
    assert len({name for _, name, _ in results}) == 2  # both lanes worked
    assert {threads for _, _, threads in results} == {1}  # no OpenMP pool of their own
    assert torch.get_num_threads() == before  # the caller's own threads are untouched


def test_one_lane_or_one_item_runs_inline():
    here = threading.current_thread().name
    assert TorchThread(lanes=1).map_lanes(_where, range(3))[2][1] == here
    assert TorchThread(lanes=2).map_lanes(_where, [7]) == [(7, here, _where(0)[2])]


def test_small_work_alone_runs_on_one_single_threaded_lane():
    """``on_lane``: one item on a lane (one thread, as beside the members), inline without lanes."""
    item, name, threads = TorchThread(lanes=2).on_lane(_where, 7)
    assert (item, name.rsplit("_", 1)[0], threads) == (7, LANE_NAME, 1)
    here = threading.current_thread().name
    assert TorchThread(lanes=1).on_lane(_where, 7)[:2] == (7, here)
    with pytest.raises(ZeroDivisionError):
        TorchThread(lanes=2).on_lane(lambda x: 1 / x, 0)


def test_a_lane_s_error_reaches_the_caller_and_the_lanes_recover():
    worker = TorchThread(lanes=2)
    with pytest.raises(ZeroDivisionError):
        worker.map_lanes(lambda x: 1 / x, [1, 0, 2])
    assert worker.map_lanes(lambda x: 2 * x, [1, 2, 3]) == [2, 4, 6]


def test_a_forked_child_gets_working_lanes(monkeypatch):
    monkeypatch.setenv("SKIN_MODEL_THREADS", "2")  # two lanes, whatever this machine's cores
    map_lanes(lambda x: x, range(2))  # the parent's lanes exist before the fork
    names = _in_a_forked_child(lambda: map_lanes(lambda x: _thread_name(), range(2)))
    assert all(name.startswith(LANE_NAME) for name in names)
