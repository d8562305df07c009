"""An attempt's processes, all of them and only them, killed when it ends; and owner records.

The worker starts each task runner in a session of its own, and everything the
attempt starts (the user's command, its children, the sorts) inherits that
session unless it leaves it with `setsid`. Where cgroup v2 is mounted and
writable, the runner also goes into a cgroup of its own, which no descendant can
leave: killing the cgroup kills a daemonized grandchild too. `Box.kill` does
both, so a mapper's `sleep 1001 &` never outlives its attempt.

An owner record (`write_owner`) names the process that made a directory, by pid
and start time, so that a later run can tell a dead run's leftovers from a live
one's (a pid alone may have been reused). Linux /proc; stdlib only.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

OWNER_FILE = ".hstream-owner"
_ROUNDS = 20


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], session [3],
    start time [19]); None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].decode("ascii", "replace").split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`, this process excepted."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fields = stat_fields(int(entry))
        if fields and len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
            found.append(int(entry))
    return found


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session, again until none is left (one may be forking)."""
    if not _kill_rounds(lambda: session_members(sid)):
        logger.warning("session %d: processes still starting after %d rounds of kills", sid,
                       _ROUNDS)


def _kill_rounds(members: Callable[[], list[int]]) -> bool:
    """SIGKILL `members()` until it is empty (a member may be forking); False if it never is."""
    for _ in range(_ROUNDS):
        pids = members()
        if not pids:
            return True
        for pid in pids:
            _kill(pid)
        time.sleep(0.01)
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- cgroups -----------------------------------------------------------------------------------


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split()[:1] == ["cgroup2"]:
                    return left.split()[4]
    except OSError:
        pass
    return None


def own_cgroup() -> str | None:
    """This process's cgroup v2 directory, if it is mounted and writable."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if path is None:
        return None
    base = os.path.join(mount, path.lstrip("/"))
    return base if os.access(base, os.W_OK) else None


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def cgroup_pids(cgroup: str) -> list[int]:
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), encoding="ascii") as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


def kill_cgroup(cgroup: str) -> None:
    """Kill every process in a cgroup and remove it (cgroup.kill where the kernel has it)."""
    try:
        _write(os.path.join(cgroup, "cgroup.kill"), "1")
    except OSError:
        _kill_rounds(lambda: cgroup_pids(cgroup))
    for _ in range(200):  # empty once the killed processes have exited
        try:
            os.rmdir(cgroup)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    logger.warning("cgroup %s: could not be removed", cgroup)


class Cgroups:
    """One worker's cgroups: `hstream-w<PID>/` under its own, a cgroup per attempt below (a
    kept runner's later attempts run in its first one's)."""

    def __init__(self) -> None:
        base = own_cgroup()
        self.root = os.path.join(base, f"hstream-w{os.getpid()}") if base else None
        if base is not None:
            sweep_cgroups(base)

    def make(self, name: str) -> str | None:
        """An attempt's cgroup; if one cannot be made, attempts have sessions only from now."""
        if self.root is None:
            return None
        path = os.path.join(self.root, name)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            logger.info("no cgroup for attempts (%s): sessions only", e)
            self.root = None
            return None
        return path

    def close(self) -> None:
        if self.root is not None:
            _remove_tree(self.root)


def _remove_tree(root: str) -> None:
    """Kill and remove a worker's attempt cgroups, then its own."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if os.path.isdir(os.path.join(root, name)):
            kill_cgroup(os.path.join(root, name))
    kill_cgroup(root)


def sweep_cgroups(base: str) -> None:
    """Kill and remove the attempt cgroups of workers that died without cleaning up."""
    for name in os.listdir(base):
        pid = name[len("hstream-w"):]
        if name.startswith("hstream-w") and pid.isdigit() and stat_fields(int(pid)) is None:
            _remove_tree(os.path.join(base, name))


class Box:
    """What an attempt runs in: the runner's session, and a cgroup where there is one. A map's
    runner kept for its job's next map keeps its box (`sweep`): the next attempt runs in it."""

    def __init__(self, cgroups: Cgroups, name: str) -> None:
        self.cgroup = cgroups.make(name)
        self.sid = 0

    def enter(self, pid: int) -> None:
        """Put the runner (its session leader) in the box before it starts anything."""
        self.sid = pid
        if self.cgroup is None:
            return
        try:
            _write(os.path.join(self.cgroup, "cgroup.procs"), str(pid))
        except OSError as e:
            logger.info("cgroup %s refused pid %d (%s): session only", self.cgroup, pid, e)
            kill_cgroup(self.cgroup)
            self.cgroup = None

    def kill(self) -> None:
        """Kill everything the attempt started, wherever it went: its cgroup holds every
        descendant (none can leave one), else its session does (a `setsid` escapes that)."""
        if self.cgroup is not None:
            kill_cgroup(self.cgroup)
            self.cgroup = None
        elif self.sid:
            kill_session(self.sid)

    def remove(self) -> None:
        """Kill what is left in the box's cgroup and remove it, for a retired runner. Its
        session was swept when its last map ended, and is not killed again: once the runner
        is reaped, its id may be another session's."""
        if self.cgroup is not None:
            kill_cgroup(self.cgroup)
            self.cgroup = None

    def sweep(self, runner: int) -> bool:
        """Kill everything the attempt started but its runner, which stays in the box for its
        job's next map: moving a process from one cgroup to another, and making and removing
        one, cost the kernel more than a small map's own work. False if the box cannot be
        emptied (a member forking faster than it is killed): the runner must then end with
        its attempt, and the box with it."""
        if self.cgroup is not None:
            cgroup = self.cgroup
            return _kill_rounds(lambda: [p for p in cgroup_pids(cgroup) if p != runner])
        if self.sid:
            sid = self.sid
            return _kill_rounds(lambda: [p for p in session_members(sid) if p != runner])
        return True


# -- owner records -----------------------------------------------------------------------------


def write_owner(directory: str, pid: int | None = None) -> None:
    """Record in `directory` which live process owns it (this one by default)."""
    pid = pid or os.getpid()
    _write(os.path.join(directory, OWNER_FILE), f"{pid} {start_time(pid) or 0}\n")


def owner_gone(directory: str) -> bool:
    """True if the directory's recorded owner no longer runs; False if it does, or if the
    directory has no readable record (then it is not ours to judge)."""
    try:
        with open(os.path.join(directory, OWNER_FILE), encoding="ascii") as f:
            pid_text, started_text = f.read().split()
        pid, started = int(pid_text), int(started_text)
    except (OSError, ValueError):
        return False
    if start_time(os.getpid()) is None:  # no /proc here: nothing can be judged
        return False
    now = start_time(pid)
    return now is None or (started != 0 and now != started)
