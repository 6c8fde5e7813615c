"""transforms.support.ahead.Ahead: order, working ahead, the byte bound, errors and stopping."""

import threading

import pytest

from transforms.support.ahead import Ahead

WAIT_S = 30  # a generous bound for a background thread to reach a point; a pass never waits this long


def _sized(value: int) -> int:
    return value


def test_outputs_come_back_in_order_with_their_contexts():
    ahead = Ahead(lambda n: iter([n * 10 + i for i in range(n)]), depth=2, max_bytes=1 << 20, size=lambda _: 1)
    try:
        taken = []
        for n in (3, 0, 2, 4):
            ahead.submit(n, f"ctx{n}")
            taken += list(ahead.take())
            assert ahead.unfinished <= 2
        taken += list(ahead.take(0))
        assert ahead.unfinished == 0
        assert taken == [("ctx3", 30), ("ctx3", 31), ("ctx3", 32), ("ctx2", 20), ("ctx2", 21),
                         ("ctx4", 40), ("ctx4", 41), ("ctx4", 42), ("ctx4", 43)]
    finally:
        ahead.close()


def test_the_next_items_are_produced_while_the_consumer_is_busy():
    started = {n: threading.Event() for n in range(3)}

    def produce(n):
        started[n].set()
        yield n

    ahead = Ahead(produce, depth=3, max_bytes=1 << 20, size=lambda _: 1)
    try:
        for n in range(3):
            ahead.submit(n)
        # Nobody has taken anything (the consumer is "running the model"): the thread went ahead anyway.
        assert all(started[n].wait(WAIT_S) for n in range(3))
        assert [value for _, value in ahead.take(0)] == [0, 1, 2]
    finally:
        ahead.close()


def test_take_waits_for_the_oldest_item_only_beyond_depth():
    release = threading.Event()

    def produce(n):
        if n == 0:
            release.wait(WAIT_S)
        yield n

    ahead = Ahead(produce, depth=2, max_bytes=1 << 20, size=lambda _: 1)
    try:
        ahead.submit(0)
        assert list(ahead.take()) == []  # one unfinished item is within depth: no wait
        ahead.submit(1)
        assert list(ahead.take()) == []
        assert ahead.unfinished == 2
        release.set()
        ahead.submit(2)  # three unfinished: take() waits until the oldest is done
        taken = [value for _, value in ahead.take()]
        assert taken[0] == 0 and ahead.unfinished <= 2
    finally:
        ahead.close()


def test_the_producer_holds_at_most_max_bytes_of_untaken_outputs():
    produced = []
    third = threading.Event()

    def produce(_):
        for i in range(10):
            produced.append(i)
            if len(produced) == 3:
                third.set()
            yield 100

    ahead = Ahead(produce, depth=1, max_bytes=250, size=_sized)
    try:
        ahead.submit("clip")
        assert third.wait(WAIT_S)
        # Two outputs (200 bytes) wait to be taken; the third (made, 300 > 250) waits for room.
        ahead._thread.join(0.5)  # give an unbounded producer time to run on; it must not
        assert len(produced) == 3
        assert [value for _, value in ahead.take(0)] == [100] * 10
    finally:
        ahead.close()


def test_one_output_bigger_than_the_bound_still_passes():
    ahead = Ahead(lambda n: iter([n]), depth=1, max_bytes=10, size=_sized)
    try:
        ahead.submit(1000)
        ahead.submit(2000)
        assert [value for _, value in ahead.take(0)] == [1000, 2000]
    finally:
        ahead.close()


def test_an_exception_in_the_producer_is_raised_in_the_consumer():
    def produce(n):
        yield n
        raise ValueError(f"bad item {n}")

    ahead = Ahead(produce, depth=1, max_bytes=1 << 20, size=lambda _: 1)
    try:
        ahead.submit(7)
        with pytest.raises(ValueError, match="bad item 7"):
            list(ahead.take(0))
    finally:
        ahead.close()


def test_close_stops_a_waiting_producer_and_runs_its_cleanup():
    cleaned = threading.Event()
    waiting = threading.Event()

    def produce(_):
        try:
            for i in range(100):
                if i == 1:
                    waiting.set()  # the second output finds no room: the producer waits
                yield i
        finally:
            cleaned.set()  # where DecodeClips kills its ffmpeg

    ahead = Ahead(produce, depth=1, max_bytes=1, size=lambda _: 1)
    ahead.submit("clip")
    assert waiting.wait(WAIT_S)
    ahead.close()
    assert cleaned.is_set()
    assert not ahead._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        ahead.submit("late")


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        Ahead(lambda n: iter([n]), depth=0, max_bytes=1, size=lambda _: 1)
