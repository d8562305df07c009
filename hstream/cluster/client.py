"""Talking to a running manager: submit a job and follow it, ask for status, kill."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from hstream import protocol
from hstream.errors import HstreamError, JobFailed, ProtocolError
from hstream.job import JobSpec, to_dict

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    job_id: str
    state: str
    message: str
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


class Client:
    def __init__(self, host: str, port: int, secret: bytes) -> None:
        self.host = host
        self.port = port
        self.secret = secret
        #: The last job this client submitted.
        self.job_id: str | None = None

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        chan = protocol.connect(self.host, self.port, self.secret)
        try:
            reply = chan.request(msg)
        finally:
            chan.close()
        if reply["op"] == "error":
            raise HstreamError(str(reply["message"]), reply.get("exit_code"))
        return reply

    def submit(self, spec: JobSpec) -> tuple[protocol.Channel, str]:
        """Submit; the channel then carries this job's progress."""
        chan = protocol.connect(self.host, self.port, self.secret)
        reply = chan.request({"op": "submit", "job": to_dict(spec)})
        if reply["op"] == "error":
            chan.close()
            raise HstreamError(str(reply["message"]), reply.get("exit_code"))
        self.job_id = str(reply["job_id"])
        return chan, self.job_id

    def run(self, spec: JobSpec, out: TextIO = sys.stderr) -> Outcome:
        """Submit and wait, printing Hadoop-style progress; Ctrl-C kills the job."""
        started = time.monotonic()
        chan, job_id = self.submit(spec)
        print(f"Running job: {job_id}", file=out, flush=True)
        progress = ProgressPrinter(out)
        try:
            while True:
                msg = chan.recv()
                if msg["op"] == "progress":
                    progress.update(msg["map"], msg["reduce"])
                elif msg["op"] == "finished":
                    if msg["state"] == "succeeded":
                        progress.update(1.0, 1.0)
                    return Outcome(job_id, msg["state"], msg["message"], msg["counters"],
                                   time.monotonic() - started)
        except KeyboardInterrupt:
            self.kill(job_id)
            raise
        except (OSError, EOFError, ProtocolError) as e:
            raise JobFailed(f"lost the manager while running {job_id}: {e}") from None
        finally:
            chan.close()

    def kill(self, job_id: str) -> None:
        try:
            self.request({"op": "kill", "job_id": job_id})
        except (OSError, EOFError, HstreamError, ProtocolError) as e:
            logger.warning("could not kill %s: %s", job_id, e)

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})


class ProgressPrinter:
    """` map 40% reduce 0%` lines, as Hadoop's client prints them: when they changed, at most
    once per `interval` seconds, except that the end of a phase is always shown."""

    def __init__(self, out: TextIO, interval: float = 1.0) -> None:
        self.out = out
        self.interval = interval
        self.last = ""
        self.printed_at = float("-inf")

    def update(self, map_fraction: float, reduce_fraction: float) -> None:
        m, r = int(map_fraction * 100), int(reduce_fraction * 100)
        line = f" map {m}% reduce {r}%"
        now = time.monotonic()
        if line == self.last:
            return
        if now - self.printed_at < self.interval and r != 100 and (m != 100 or r != 0):
            return
        self.last, self.printed_at = line, now
        print(line, file=self.out, flush=True)


def format_counters(counters: dict[str, dict[str, int]]) -> str:
    lines = [f"Counters: {sum(len(v) for v in counters.values())}"]
    for group in sorted(counters):
        lines.append(f"\t{group}")
        for name in sorted(counters[group]):
            lines.append(f"\t\t{name}={counters[group][name]}")
    return "\n".join(lines)
