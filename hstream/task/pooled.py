"""Background work of an attempt on threads kept for the next attempt's.

A runner serves map after map of its job, and each attempt reads its command's stderr,
feeds its input and watches it for signs of life, each beside the main thread. A new
thread's `start` waits until the thread runs; on a busy machine that wait costs a tiny map
more than its own work. `Pooled` has the part of Thread's interface the attempt uses
(start, join, is_alive, run); its work runs on a daemon thread that then waits for the
next. A thread whose work never ends (a pipe that a background child holds open) is simply
not given more. Stdlib only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_lock = threading.Lock()
#: Threads waiting for work.
_idle: list[_Carrier] = []


class Pooled:
    """Work for a kept thread: subclass and override `run`, or pass a `target`."""

    def __init__(self, target: Callable[..., object] | None = None, args: tuple[Any, ...] = (),
                 name: str = "") -> None:
        self.name = name or type(self).__name__
        self._target = target
        self._args = args
        self._started = False
        self._done = threading.Event()

    def run(self) -> None:
        if self._target is not None:
            self._target(*self._args)

    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"{self.name} started twice")
        self._started = True
        with _lock:
            carrier = _idle.pop() if _idle else None
        if carrier is None:
            carrier = _Carrier()
            carrier.start()
        carrier.inbox.put(self)

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        return self._started and not self._done.is_set()


class _Carrier(threading.Thread):
    """A daemon thread that runs one piece of work after another."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="pooled")
        self.inbox: queue.SimpleQueue[Pooled] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            work = self.inbox.get()
            try:
                work.run()
            except Exception:  # noqa: BLE001 - as a thread's uncaught exception: logged
                logger.exception("%s failed", work.name)
            finally:
                with _lock:  # free before the work is seen done: the next attempt's finds it
                    _idle.append(self)
                work._done.set()
