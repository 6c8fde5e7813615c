"""Work ahead of a DoFn's downstream: run each element's generator on a background thread.

DecodeClips is fused with RunInference: the model runs inside the decoder's `yield`, so without
help a worker decodes, then waits for the model, then decodes again. `Ahead` lets one thread
produce the next elements' outputs (ffmpeg decoding, log-mel) while the main thread runs the
model on earlier ones. It keeps order, holds at most `depth` unfinished elements and at most
`max_bytes` of produced outputs (a producer waits, it never drops), and hands every output back
to the main thread, where Beam's metrics, counters and receivers live.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

_OUT, _ERROR, _DONE = "out", "error", "done"


def in_window(output: Any, window: Any, timestamp: Any) -> WindowedValue | beam.pvalue.TaggedOutput:
    """`output` (a value or a TaggedOutput) placed in its own element's window and timestamp.

    For outputs a DoFn emits after their element's process() call (from finish_bundle, or during a
    later element's call), where Beam would otherwise stamp them with the current element's.
    """
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, timestamp, (window,)))
    return WindowedValue(output, timestamp, (window,))


class _Closed(Exception):
    """Raised inside a producer that is told to stop (the bundle failed or the DoFn is torn down)."""


class Ahead:
    """One background thread running `produce(item)` for submitted items in order, ahead of the consumer.

    Args:
      produce: item -> iterator of outputs (run on the background thread; it must not touch Beam's
        per-thread state: metrics are yielded as callables for the consumer to call).
      depth: how many submitted items may be unfinished before `take` waits for the oldest.
      max_bytes: produced but untaken outputs the producer may hold (by `size`); one output always fits.
      size: bytes an output holds.
      name: the thread's name.
    """

    def __init__(self, produce: Callable[[Any], Iterator[Any]], *, depth: int, max_bytes: int,
                 size: Callable[[Any], int], name: str = "ahead"):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._produce = produce
        self._depth = depth
        self._max_bytes = max_bytes
        self._size = size
        self._cond = threading.Condition()
        self._inbox: collections.deque = collections.deque()
        self._outbox: collections.deque = collections.deque()
        self._held = 0  # bytes in the outbox
        self._open = 0  # submitted items whose DONE the consumer has not taken yet
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def unfinished(self) -> int:
        """Submitted items whose last output the consumer has not taken yet."""
        return self._open

    def submit(self, item: Any, context: Any = None) -> None:
        """Queues `item`; its outputs come back from `take` paired with `context`."""
        with self._cond:
            if self._closing:
                raise RuntimeError("Ahead is closed")
            self._inbox.append((item, context))
            self._open += 1
            self._cond.notify_all()

    def take(self, keep: int | None = None) -> Iterator[tuple[Any, Any]]:
        """(context, output) pairs in submission order: those ready, then more until <= `keep` are unfinished.

        `keep` defaults to `depth`; `take(0)` returns once every submitted item is finished.
        Re-raises, in the caller's thread, an exception that escaped `produce`.
        """
        keep = self._depth if keep is None else keep
        while True:
            with self._cond:
                while not self._outbox and self._open > keep:
                    self._cond.wait()
                if not self._outbox:
                    return
                kind, context, value, size = self._outbox.popleft()
                self._held -= size
                if kind == _DONE:
                    self._open -= 1
                self._cond.notify_all()
            if kind == _OUT:
                yield context, value
            elif kind == _ERROR:
                raise value

    def close(self) -> None:
        """Stops the thread: a running producer is closed (its `finally` blocks run), queued items are dropped."""
        with self._cond:
            self._closing = True
            self._inbox.clear()
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _put(self, kind: str, context: Any, value: Any, size: int = 0) -> None:
        with self._cond:
            while self._outbox and self._held + size > self._max_bytes and not self._closing:
                self._cond.wait()
            if self._closing:
                raise _Closed()
            self._outbox.append((kind, context, value, size))
            self._held += size
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._inbox and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                item, context = self._inbox.popleft()
            outputs = None
            try:
                try:
                    outputs = self._produce(item)
                    for output in outputs:
                        self._put(_OUT, context, output, self._size(output))
                finally:
                    close = getattr(outputs, "close", None)
                    if close is not None:
                        close()  # a generator's finally blocks (an ffmpeg to kill) run here, on stop too
                self._put(_DONE, context, None)
            except _Closed:
                return
            except BaseException as e:  # pylint: disable=broad-except
                try:
                    self._put(_ERROR, context, e)
                    self._put(_DONE, context, None)
                except _Closed:
                    return
