"""A task's stderr: `reporter:counter:` and `reporter:status:` lines, the rest to its log.

Stderr is drained on its own thread while the task runs, so a chatty command
can never block on a full pipe (Hadoop's MRErrorThread). Stdlib only.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import IO

TAIL_LINES = 10


class StderrReader(threading.Thread):
    """Reads one process's stderr to the end; counters, status and a tail are kept."""

    def __init__(self, stream: IO[bytes], log: IO[bytes], prefix: bytes = b"reporter:") -> None:
        super().__init__(daemon=True, name="stderr")
        self.stream = stream
        self.log = log
        self.prefix = prefix
        self.counters: dict[str, dict[str, int]] = {}
        self.status = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.lock = threading.Lock()
        self.activity = 0  # bumped on every line: a sign of life for the task timeout

    def run(self) -> None:
        for line in self.stream:
            self.activity += 1
            if line.startswith(self.prefix):
                if self._report(line[len(self.prefix):].rstrip(b"\r\n")):
                    continue
            self.log.write(line)
            self.tail.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        self.log.flush()

    def _report(self, body: bytes) -> bool:
        text = body.decode("utf-8", "replace")
        if text.startswith("counter:"):
            parts = text[len("counter:"):].split(",")
            if len(parts) != 3:
                return False
            try:
                amount = int(parts[2])
            except ValueError:
                return False
            with self.lock:
                group = self.counters.setdefault(parts[0], {})
                group[parts[1]] = group.get(parts[1], 0) + amount
            return True
        if text.startswith("status:"):
            self.status = text[len("status:"):]
            return True
        return False

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {g: dict(c) for g, c in self.counters.items()}
