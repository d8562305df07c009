"""A task's reports, bounded at the source: its stderr (`reporter:counter:` and
`reporter:status:` lines, the rest to its log) and the JSON lines the task runner sends its
worker.

Stderr is drained on its own thread while the task runs, so a chatty command can never
block on a full pipe (Hadoop's MRErrorThread). It is read a piece at a time, so a line of
any length costs at most LINE_PIECE bytes of memory, and what is kept of it (the tail, the
status, counter names and counts) is cut to the limits in `hstream.messages`, which the
worker (`read_reports`) and the manager check again: no report can outgrow a frame and take
its worker down. A command that reports more counters than Hadoop allows fails its attempt,
as in Hadoop. Stdlib only.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from hstream import messages
from hstream.errors import BadMessage
from hstream.messages import INT64, clip
from hstream.task.pooled import Pooled

#: Stderr is read at most this much at a time.
LINE_PIECE = 64 << 10


class StderrReader(Pooled):
    """Reads one process's stderr to the end; counters, status and a tail are kept."""

    def __init__(self, stream: IO[bytes], log_path: str, prefix: bytes = b"reporter:") -> None:
        super().__init__(name="stderr")
        self.stream = stream
        #: The attempt's stderr log, made on the first byte to keep (most tasks write none,
        #: and a file is an inode to allocate: many small maps pay for each).
        self.log_path = log_path
        self.log: IO[bytes] | None = None
        self.prefix = prefix
        self.counters: dict[str, dict[str, int]] = {}
        self.status = ""
        self.tail: deque[str] = deque(maxlen=messages.TAIL_LINES)
        self.lock = threading.Lock()
        self.activity = 0  # bumped on every line: a sign of life for the task timeout
        #: Hadoop's "Too many counters" message once the command went past the limits.
        self.too_many = ""
        self._names = 0

    def run(self) -> None:
        whole = True  # whether the next piece starts a line
        for piece in iter(lambda: self.stream.readline(LINE_PIECE), b""):
            self.activity += 1
            starts, whole = whole, piece.endswith(b"\n")
            if starts and whole and piece.startswith(self.prefix):
                if self._report(piece[len(self.prefix):].rstrip(b"\r\n")):
                    continue
            self._keep(piece)
            if starts:
                self.tail.append(_tail_line(piece, whole))
        if self.log is not None:
            self.log.close()

    def _keep(self, piece: bytes) -> None:
        if self.log is None:
            self.log = open(self.log_path, "ab")
        self.log.write(piece)

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
            if not -INT64 <= amount < INT64:
                return False
            with self.lock:  # names cut to Hadoop's limits, as Hadoop cuts them
                self._count(parts[0][:messages.GROUP_NAME_CHARS],
                            parts[1][:messages.COUNTER_NAME_CHARS], amount)
            return True
        if text.startswith("status:"):
            self.status = clip(text[len("status:"):], messages.STATUS_CHARS)
            return True
        return False

    def _count(self, group: str, name: str, amount: int) -> None:
        counters = self.counters.get(group)
        if counters is None:
            if len(self.counters) >= messages.COUNTER_GROUPS:
                self.too_many = (f"Too many counter groups: {len(self.counters) + 1} "
                                 f"max={messages.COUNTER_GROUPS}")
                return
            counters = self.counters[group] = {}
        if name not in counters:
            if self._names >= messages.COUNTERS:
                self.too_many = f"Too many counters: {self._names + 1} max={messages.COUNTERS}"
                return
            self._names += 1
        counters[name] = max(-INT64, min(INT64 - 1, counters.get(name, 0) + amount))

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {g: dict(c) for g, c in self.counters.items()}


def _tail_line(piece: bytes, whole: bool) -> str:
    text = piece.decode("utf-8", "replace").rstrip("\r\n")
    if whole:
        return clip(text, messages.TAIL_LINE_CHARS)
    mark = f"... [cut: the line is longer than {LINE_PIECE:,} bytes]"
    return text[:messages.TAIL_LINE_CHARS - len(mark)] + mark


# -- the task runner's reports to its worker ------------------------------------------


def bounded(report: dict[str, Any]) -> dict[str, Any]:
    """A report cut to the limits its receivers check: a result's error and stderr tail, a
    progress report's status."""
    result = report.get("result")
    if isinstance(result, dict):
        result["error"] = clip(str(result.get("error") or ""), messages.ERROR_CHARS)
        tail = list(result.get("stderr_tail") or [])[-messages.TAIL_LINES:]
        result["stderr_tail"] = [clip(str(line), messages.TAIL_LINE_CHARS) for line in tail]
    if isinstance(report.get("status"), str):
        report["status"] = clip(report["status"], messages.STATUS_CHARS)
    return report


_RESULT = messages.obj(messages.TASK_RESULT)
_PROGRESS = {k: f for k, f in messages.FROM_WORKER["progress"].fields.items()
             if k != "attempt_id"}


def read_reports(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The task runner's reports, checked, for its worker to pass on: progress reports, then
    the result. A line too long, or a result that does not fit its schema, becomes a failed
    result that says why; whatever the runner writes, its worker forwards something bounded."""
    while line := stream.readline(messages.REPORT_BYTES + 1):
        if len(line) > messages.REPORT_BYTES:
            size = len(line) + (0 if line.endswith(b"\n") else _skip_line(stream))
            yield _failed(f"the task runner's report was too large ({size:,} bytes; the "
                          f"limit is {messages.REPORT_BYTES:,})")
            continue
        try:
            report = json.loads(line)
        except (ValueError, RecursionError):
            continue
        checked = _check_report(report) if isinstance(report, dict) else None
        if checked is not None:
            yield checked


def _check_report(report: dict[str, Any]) -> dict[str, Any] | None:
    try:
        if "result" in report:
            messages.check_value("result", report["result"], _RESULT)
            return {"result": report["result"]}
        messages.check_fields("progress", report, _PROGRESS)
    except BadMessage as e:
        if "result" in report:
            return _failed(f"the task runner's result was refused: {e}")
        return None  # a progress report is only a sign of life: drop a bad one
    return {k: report[k] for k in _PROGRESS if k in report}


def _skip_line(stream: IO[bytes]) -> int:
    """Read on to the end of an oversized line, a piece at a time; its length."""
    skipped = 0
    while piece := stream.readline(LINE_PIECE):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _failed(error: str) -> dict[str, Any]:
    return {"result": {"ok": False, "error": error}}
