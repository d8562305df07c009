"""`python -m hstream.task ATTEMPT_DIR`: one attempt of a map or reduce task, as its own process.

The worker starts it in a new session and writes the job's credentials (`protocol.Auth`:
the job's token, never the cluster secret, and the cluster CA) and the TaskSpec (JSON) on its
stdin. Killing the session kills the attempt: this process, the user's command, the
sorts. Reports go to stdout as JSON lines: {"progress": …}, finally {"result": …}.
After a map that went well the runner waits for the same job's next map (the worker keeps
it, as Hadoop reuses a JVM): a line {"root": DIR} then credentials and spec again; EOF ends
it. This is the only module that imports both pipelines. Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import IO

from hstream import protocol
from hstream.job import TaskResult, TaskSpec, from_dict, to_dict
from hstream.task import knobs
from hstream.task.attempt import Attempt, Reporter, TaskError
from hstream.task.maptask import run_map
from hstream.task.reducetask import run_reduce

logger = logging.getLogger(__name__)


def _watch_parent() -> None:
    """If the worker dies, the attempt dies with it: no orphans."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Run the attempt in ARGV[0]; after a map that went well, the job's next map attempts as
    the worker sends them (a line naming the directory, then credentials and spec), until
    it closes stdin."""
    args = sys.argv[1:] if argv is None else argv
    root = os.path.abspath(args[0])
    stdin = sys.stdin.buffer
    threading.Thread(target=_watch_parent, daemon=True).start()
    while True:
        spec, result = _attempt(root, stdin)
        if spec.kind != "map" or not result.ok:
            return 0 if result.ok else 1
        line = stdin.readline(MAX_NEXT)
        if not line:
            return 0
        root = _next_root(line)


#: The longest line naming a runner's next attempt directory.
MAX_NEXT = 64 << 10


def _next_root(line: bytes) -> str:
    root = json.loads(line).get("root")
    if not isinstance(root, str) or not os.path.isabs(root):
        raise ValueError(f"bad attempt directory from the worker: {root!r}")
    return root


def _attempt(root: str, stdin: IO[bytes]) -> tuple[TaskSpec, TaskResult]:
    os.chdir(root)
    auth = protocol.read_auth(stdin)
    spec = from_dict(TaskSpec, json.loads(stdin.readline()))
    _log_to(root)
    reporter = Reporter(sys.stdout.buffer)
    guard = knobs.start_guard(spec)
    try:
        attempt = Attempt(spec, root, auth, reporter, packs=True)
        result = run_map(attempt) if spec.kind == "map" else run_reduce(attempt, stdin)
    except TaskError as e:  # a failed attempt's counters never count, so none are sent
        result = TaskResult(ok=False, error=str(e), exit_status=e.exit_status, stderr_tail=e.tail)
    except Exception as e:  # noqa: BLE001 - any crash is this attempt's failure, reported
        logger.exception("attempt failed")
        result = TaskResult(ok=False, error=f"{type(e).__name__}: {e}")
    result = knobs.finish(spec, root, result, guard)
    reporter.send({"result": to_dict(result)}, force=True)
    return spec, result


class _TaskLog(logging.FileHandler):
    """The attempt's task.log, made on its first record (a small map that went well writes
    none); a runner's next attempt moves it to its own directory (`_log_to`)."""

    def move_to(self, path: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            if self.stream is not None:
                self.stream.close()
                self.stream = None  # reopened on the next record
            self.baseFilename = path


def _log_to(root: str) -> None:
    """Log to this attempt's task.log: the runner's handler moved, or one made and put in
    place of the zygote's."""
    path = os.path.join(root, "task.log")
    top = logging.getLogger()
    for old in top.handlers[:]:
        if isinstance(old, _TaskLog):
            old.move_to(path)
            return
        top.removeHandler(old)
        old.close()
    handler = _TaskLog(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    top.addHandler(handler)
    top.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
