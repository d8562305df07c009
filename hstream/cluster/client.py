"""Talking to a running manager: submit a job and follow it, ask for status, kill."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from hstream import protocol
from hstream.errors import OUTPUT_EXISTS, HstreamError, JobFailed, OutputExists, ProtocolError
from hstream.job import JobSpec, to_dict

logger = logging.getLogger(__name__)

#: Seconds a client interrupted by Ctrl-C waits for the manager to end the job it killed.
KILL_WAIT = 10.0
#: Seconds a client waits for its lost manager to restart (`[workers] reconnect`'s default).
REATTACH_WINDOW = 60.0


@dataclass
class Outcome:
    job_id: str
    state: str
    message: str
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


class Client:
    def __init__(self, host: str, port: int, auth: bytes | protocol.Auth) -> None:
        self.host = host
        self.port = port
        #: The cluster secret, and the cluster's CA when it runs TLS (`clusterstate.client_auth`).
        self.auth = auth
        #: The last job this client submitted.
        self.job_id: str | None = None
        #: How long a client waiting on a job waits for a lost manager to come back (a
        #: cluster's may restart; the embedded cluster's dies with its client: 0).
        self.reattach_window = 0.0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        chan = protocol.connect(self.host, self.port, self.auth)
        try:
            reply = chan.request(msg)
        finally:
            chan.close()
        if reply["op"] == "error":
            raise HstreamError(str(reply["message"]), reply.get("exit_code"))
        return reply

    def submit(self, spec: JobSpec) -> tuple[protocol.Channel, str]:
        """Submit; the channel then carries this job's progress."""
        chan = protocol.connect(self.host, self.port, self.auth)
        reply = chan.request({"op": "submit", "job": to_dict(spec)})
        if reply["op"] == "error":
            chan.close()
            raise HstreamError(str(reply["message"]), reply.get("exit_code"))
        self.job_id = str(reply["job_id"])
        return chan, self.job_id

    def run(self, spec: JobSpec, out: TextIO = sys.stderr, progress: Progress | None = None,
            on_submit: Callable[[str], None] | None = None) -> Outcome:
        """Submit and wait, showing progress (Hadoop-style lines unless `progress` says
        otherwise); `on_submit` hears the job id first. Ctrl-C kills the job."""
        started = time.monotonic()
        chan, job_id = self.submit(spec)
        if on_submit is not None:
            on_submit(job_id)
        print(f"Running job: {job_id}", file=out, flush=True)
        progress = progress or ProgressPrinter(out)
        try:
            while True:
                try:
                    msg = chan.recv()
                except (OSError, EOFError, ProtocolError) as e:
                    chan.close()
                    chan, msg = self.reattach(job_id, e)
                if msg["op"] == "progress":
                    progress.update(msg["map"], msg["reduce"], int(msg.get("failed", 0)))
                elif msg["op"] == "finished":
                    if msg.get("exit_code") == OUTPUT_EXISTS:  # another job's output won
                        raise OutputExists(str(msg["message"]))
                    if msg["state"] == "succeeded":
                        progress.update(1.0, 1.0)
                    return Outcome(job_id, msg["state"], msg["message"], msg["counters"],
                                   time.monotonic() - started)
        except KeyboardInterrupt:
            self.kill(job_id)
            _await_finished(chan, KILL_WAIT)
            raise
        finally:
            chan.close()
            progress.close()

    def reattach(self, job_id: str,
                 why: BaseException) -> tuple[protocol.Channel, dict[str, Any]]:
        """Follow the job again after losing the manager: a manager that restarts resumes its
        jobs (journal.py). Retried with backoff for `self.reattach_window` seconds."""
        logger.warning("lost the manager while running %s (%s): re-attaching", job_id,
                       why or "EOF")
        deadline, pause = time.monotonic() + self.reattach_window, 0.1
        while True:
            try:
                chan = protocol.connect(self.host, self.port, self.auth)
            except (OSError, EOFError, ProtocolError) as e:
                if time.monotonic() >= deadline:
                    raise JobFailed(f"lost the manager while running {job_id}: {why or 'EOF'}; "
                                    f"it did not come back within {self.reattach_window:g} s "
                                    f"({e})") from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            return self._attached(chan, job_id)

    def _attached(self, chan: protocol.Channel,
                  job_id: str) -> tuple[protocol.Channel, dict[str, Any]]:
        """The channel of a successful attach and its first message (`attached`, or
        `finished` for a job that ended meanwhile)."""
        try:
            chan.send({"op": "attach", "job_id": job_id})
            reply = chan.recv()
        except (OSError, EOFError, ProtocolError) as e:
            chan.close()
            raise JobFailed(f"lost the manager while re-attaching to {job_id}: {e}") from None
        if reply["op"] == "error":
            chan.close()
            raise JobFailed(f"the manager lost {job_id}: {reply['message']}")
        return chan, reply

    def kill(self, job_id: str) -> None:
        try:
            self.request({"op": "kill", "job_id": job_id})
        except (OSError, EOFError, HstreamError, ProtocolError) as e:
            logger.warning("could not kill %s: %s", job_id, e)

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})


def _await_finished(chan: protocol.Channel, timeout: float) -> None:
    """After a kill, until the manager says the job is over (its staging area is gone by then),
    so that a client removing its own scratch (`-input -`, `-output -`) removes it last."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            chan.sock.settimeout(left)
            if chan.recv()["op"] == "finished":
                return
    except (OSError, EOFError, ProtocolError) as e:
        logger.info("no word from the manager after the kill: %s", e)


class Progress(Protocol):
    """What shows a running job: ProgressPrinter's lines, or the CLI's live bar."""

    def update(self, map_fraction: float, reduce_fraction: float, failed: int = 0) -> None: ...

    def close(self) -> None: ...


class ProgressPrinter:
    """` map 40% reduce 0%` lines, as Hadoop's client prints them: when they changed, at most
    once per `interval` seconds, except that the end of a phase is always shown."""

    def __init__(self, out: TextIO, interval: float = 1.0) -> None:
        self.out = out
        self.interval = interval
        self.last = ""
        self.printed_at = float("-inf")

    def update(self, map_fraction: float, reduce_fraction: float, failed: int = 0) -> None:
        m, r = int(map_fraction * 100), int(reduce_fraction * 100)
        line = f" map {m}% reduce {r}%"
        now = time.monotonic()
        if line == self.last:
            return
        if now - self.printed_at < self.interval and r != 100 and (m != 100 or r != 0):
            return
        self.last, self.printed_at = line, now
        print(line, file=self.out, flush=True)

    def close(self) -> None:
        """Lines need no ending."""


def format_counters(counters: dict[str, dict[str, int]]) -> str:
    lines = [f"Counters: {sum(len(v) for v in counters.values())}"]
    for group in sorted(counters):
        lines.append(f"\t{group}")
        for name in sorted(counters[group]):
            lines.append(f"\t\t{name}={counters[group][name]}")
    return "\n".join(lines)
