"""How a running job shows itself on stderr: a live bar on a terminal, Hadoop's lines elsewhere.

On a terminal (and without -verbose) one line is redrawn in place: map and reduce bars and
percentages, the time since submission and the failed attempts so far. Piped, logged or with
-verbose, stderr gets Hadoop's ` map 40% reduce 0%` lines, which scripts and logs expect.
Either way the tracking URL comes first, as Hadoop prints it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import click

from hstream.cluster.client import ProgressPrinter

BAR = 20
TICK = 0.5


class LiveBar:
    """One line redrawn in place: map %, reduce %, elapsed, failed attempts."""

    def __init__(self, out: TextIO, interval: float = TICK) -> None:
        self.out = out
        self.started = time.monotonic()
        self.map = self.reduce = 0.0
        self.failed = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._tick, args=(interval,), daemon=True,
                                       name="progress")

    def update(self, map_fraction: float, reduce_fraction: float, failed: int = 0) -> None:
        if not self.thread.is_alive() and not self.stopped.is_set():
            self.thread.start()  # the first report: the job runs, the clock starts ticking
        self.map, self.reduce = map_fraction, reduce_fraction
        self.failed = max(self.failed, failed)  # the last report may leave them out
        self._draw()

    def close(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self._draw()
        with self.lock:
            self.out.write("\n")
            self.out.flush()

    def _tick(self, interval: float) -> None:
        while not self.stopped.wait(interval):  # the clock moves even when nothing else does
            self._draw()

    def _draw(self) -> None:
        line = render(self.map, self.reduce, time.monotonic() - self.started, self.failed)
        with self.lock:
            self.out.write("\r" + line + "\x1b[K")
            self.out.flush()


def render(map_fraction: float, reduce_fraction: float, elapsed: float, failed: int) -> str:
    def bar(fraction: float) -> str:
        done = int(min(max(fraction, 0.0), 1.0) * BAR)
        return "[" + "#" * done + "." * (BAR - done) + f"] {int(fraction * 100):3d}%"

    minutes, seconds = divmod(int(elapsed), 60)
    failures = f"  {failed} failed attempt{'s' if failed != 1 else ''}" if failed else ""
    return (f" map {bar(map_fraction)}  reduce {bar(reduce_fraction)}  "
            f"{minutes}:{seconds:02d}{failures}")


def follow(out: TextIO, verbose: bool, url: Callable[[str], str] | None) -> dict[str, Any]:
    """`Client.run`'s arguments for showing a job: the bar or the lines, and the tracking URL
    printed as soon as the job has an id."""
    live = out.isatty() and not verbose

    def submitted(job_id: str) -> None:
        if url is not None:
            click.echo(f"The url to track the job: {url(job_id)}", err=True)

    return {"out": out, "progress": LiveBar(out) if live else ProgressPrinter(out),
            "on_submit": submitted}
