"""Sorting map output with GNU sort: bounded-memory spills, then one merge.

Every host has coreutils `sort`, which sorts and merges in C far faster than
Python can touch lines. The map side works like Hadoop's: output accumulates
in a buffer of `hstream.sort.buffer.bytes`; each full buffer is one *spill*, a
`sort` process that writes a sorted run to disk; at the end `sort -m` merges
the runs. Memory is bounded by the buffer, never by the input.

Byte order on whole lines equals byte order on keys unless a key holds a byte
below the separator (see `KeySpec.low_bytes`). Whole-line sorting is about 1.8
times faster, so a spill sorts whole lines while its data has no such byte and
switches to a key sort (`-t SEP -k1,N`) as soon as one appears. Runs of both
kinds are in the same order where they can differ in no way, so one key-order
merge serves any mix.

With `mapreduce.map.output.compress` a run is written compressed (`SpillCodec`: the spill
sort's stdout piped into `gzip -1` or `bzip2 -1`, the file is the compressor's output) and
read back through a decompressor whose stdout `sort -m` reads as /dev/fd/N: the data never
passes through Python. sort's own temporary files use the same tool (--compress-program).
A merge takes at most `FAN_IN` compressed runs (one decompressor each); more are merged in
groups first, as sort itself merges at most that many files at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, NoReturn, cast

from hstream.hadoop.keyfields import KeySpec
from hstream.task.lines import LineCutter, LineLimit, Lines

logger = logging.getLogger(__name__)

DEFAULT_BUFFER = 64 << 20
SORT_ENV = {"LC_ALL": "C"}
#: Compressed runs one merge reads at most (GNU sort's default --batch-size).
FAN_IN = 16
#: The memory one `sort` works in. A spill larger than this is sorted in pieces that sort
#: merges from its temporary files, and pieces that fit a CPU's last-level cache sort faster
#: than the whole spill at once: on the development machine (32 MiB of L3) a map's 45 MB of
#: output took a median 2.7 CPU-s instead of 3.0, and a 21 MB one 1.2 instead of 1.7 (and
#: sort's memory is a fifth). Not where the temporary files would be compressed: that costs
#: more.
SORT_MEMORY = 16 << 20
#: Map output up to this size is sorted in the runner (Python's sort of a few thousand lines
#: costs less than starting a `sort`): the common case of many small input files.
SMALL_RUN = 256 << 10


@dataclass(frozen=True)
class SortOrder:
    """How map output is ordered: by key (default) or by a KeyFieldBasedComparator spec."""

    key: KeySpec = KeySpec()
    #: GNU-sort style options of `mapreduce.partition.keycomparator.options`, already
    #: translated to sort arguments (for example ["-k2,2nr"]); empty for the default order.
    comparator: tuple[str, ...] = ()
    #: Field separator inside the key, for the comparator.
    key_field_sep: bytes = b"\t"

    def argv(self, keyed: bool) -> list[str]:
        if self.comparator:
            return ["-s", "-t", _sep_arg(self.key_field_sep), *self.comparator]
        if not keyed:
            return []
        return ["-t", _sep_arg(self.key.sep), f"-k1,{self.key.fields}"]


def _sep_arg(sep: bytes) -> str:
    return sep.decode("latin-1")


def sort_command(order: SortOrder, keyed: bool, buffer: int, tmpdir: str,
                 merge: bool = False, compress: str | None = None) -> list[str]:
    """`compress`: the program sort compresses its temporary files with (it runs it without
    arguments to compress, with -d to decompress). A sort works in at most SORT_MEMORY
    unless its temporary files would be compressed."""
    if not merge and compress is None:
        buffer = min(buffer, SORT_MEMORY)
    argv = ["sort", f"--buffer-size={max(buffer, 1 << 20) // 1024}K",
            f"--temporary-directory={tmpdir}",
            "--parallel=1"]
    if merge:
        argv.append("--merge")
    if compress:
        argv.append(f"--compress-program={compress}")
    return argv + order.argv(keyed)


def sort_env() -> dict[str, str]:
    return {**os.environ, **SORT_ENV}


@dataclass(frozen=True)
class SpillCodec:
    """The command-line tool that compresses spill runs: gzip and bzip2 are on every host, and
    a pipe between it and sort keeps the data out of Python."""

    program: str
    level: str
    suffix: str

    def compress(self) -> list[str]:
        return [self.program, self.level]

    def decompress(self) -> list[str]:
        return [self.program, "-dc"]


GZIP = SpillCodec("gzip", "-1", ".gz")
BZIP2 = SpillCodec("bzip2", "-1", ".bz2")


@dataclass
class Run:
    path: str
    keyed: bool
    records: int = 0
    #: How the run's file is compressed; None: plain lines.
    codec: SpillCodec | None = None


#: Roles in a Team, downstream first: the order in which a failure is blamed.
COMPRESSOR, SORT, DECOMPRESSOR = 0, 1, 2


@dataclass
class Team:
    """Processes working on runs together (a spill sort and its compressor; decompressors and
    their merge): all are waited for on success and killed on an error path. Of those that
    failed, the one furthest downstream is the cause: a compressor that died leaves its sort
    with EPIPE, a merge that died its decompressors; a decompressor of a corrupt run fails
    though the merge saw a clean end of it."""

    what: str
    where: str
    procs: list[tuple[int, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, argv: list[str], role: int, **kwargs: Any) -> subprocess.Popen[bytes]:
        try:
            proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=sort_env(), **kwargs)
        except OSError as e:
            self.kill()
            raise SortFailed(f"{self.what} failed: {argv[0]}: {e.strerror}") from None
        self.procs.append((role, proc))
        return proc

    def finish(self) -> None:
        """Wait for every process; raise SortFailed if one failed. Our ends of their pipes
        close first: a process still writing to a reader that stopped early fails."""
        self._close("stdin", "stdout")
        try:
            failed = [p for _, p in sorted(self.procs, key=lambda rp: rp[0]) if p.wait() != 0]
            if failed:
                raise sort_failed(failed[0], self.what, self.where)
        finally:
            self._close("stderr")

    def kill(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for _, proc in self.procs:
            proc.wait()
        self._close("stdin", "stdout", "stderr")

    def _close(self, *names: str) -> None:
        for _, proc in self.procs:
            for stream in (getattr(proc, name) for name in names):
                if stream is not None:
                    try:
                        stream.close()
                    except BrokenPipeError:  # unwritten bytes for a process that is gone
                        pass

    def __enter__(self) -> Team:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        else:
            self.kill()


@dataclass
class Spiller:
    """Takes map output in arbitrary chunks, writes sorted runs of at most `buffer` bytes
    (compressed with `codec` if given)."""

    order: SortOrder
    buffer: int
    workdir: str
    limit: LineLimit | None = None
    codec: SpillCodec | None = None
    runs: list[Run] = field(default_factory=list)
    keyed: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    _team: Team | None = None
    _filled: int = 0
    _pending: Team | None = None
    #: Output held back while it is small (see SMALL_RUN); it may never need a sort process.
    _held: bytearray = field(default_factory=bytearray)
    #: All the output, sorted, when `close(keep_small=True)` found it small.
    small: bytes | None = None

    def __post_init__(self) -> None:
        self.keyed = bool(self.order.comparator)
        self._low = self.order.key.low_bytes()
        self._lines = LineCutter(self.limit)

    def write(self, data: bytes) -> None:
        """Add map output; whole lines reach a run, a trailing partial line waits."""
        with self._killed_on_error():
            lines = self._lines.cut(data)
            if lines:
                self._write_lines(lines)

    def _write_lines(self, data: Lines) -> None:
        if not self.keyed and self._low is not None and self._low(cast(bytes, data)):
            if self._proc is not None:
                self._end_run()
            self.keyed = True
            logger.debug("a key holds a byte below the separator: sorting by key field")
        if not self._hold(data):
            self._spill(data)

    def _spill(self, data: Lines) -> None:
        """Into sort processes, a buffer's worth each."""
        pos, n = 0, len(data)  # slices go out as views: a long line is never copied
        while pos < n:
            if self._proc is None:
                self._start_run()
            room = self.buffer - self._filled
            if n - pos <= room:
                self._feed(data, pos, n)
                return
            cut = data.rfind(b"\n", pos, pos + room) + 1 or data.find(b"\n", pos + room) + 1
            self._feed(data, pos, cut)
            pos = cut
            self._end_run()

    def _hold(self, data: Lines) -> bool:
        """Keep `data` in memory while all output so far is a small plain run (a tiny map's
        output then costs no `sort` process); once it is not, the held lines lead the first
        run."""
        plain = not self.keyed and not self.order.comparator and self.codec is None
        if plain and not self.runs and len(self._held) + len(data) <= min(SMALL_RUN, self.buffer):
            self._held += data
            return True
        if self._held:
            held, self._held = self._held, bytearray()
            self._spill(held)
        return False

    def _write_held(self) -> None:
        """The held output as the only run."""
        data = self._sorted_held()
        path = os.path.join(self.workdir, "spill0.out")
        with open(path, "wb") as out:
            out.write(data)
        self.runs.append(Run(path, False, records=data.count(b"\n")))

    def _sorted_held(self) -> bytes:
        """The held lines sorted here, whole lines in byte order, exactly as `LC_ALL=C sort`
        orders them; the held buffer is emptied."""
        lines = bytes(self._held).split(b"\n")
        self._held = bytearray()
        lines.pop()  # whole lines: the last is empty
        lines.sort()
        return b"\n".join(lines) + b"\n" if lines else b""

    def _feed(self, data: Lines, start: int, end: int) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(memoryview(data)[start:end])
        except BrokenPipeError:  # the sort died (or its compressor); its message says why
            self._failed()
        self._filled += end - start
        self.runs[-1].records += data.count(b"\n", start, end)

    def _start_run(self) -> None:
        suffix = self.codec.suffix if self.codec else ""
        path = os.path.join(self.workdir, f"spill{len(self.runs)}.out{suffix}")
        argv = sort_command(self.order, self.keyed, self.buffer + (self.buffer >> 2),
                            self.workdir, compress=self.codec.program if self.codec else None)
        self._team = team = Team("spilling map output", self.workdir)
        with open(path, "wb") as out:
            sink: Any = out
            if self.codec is not None:
                sink = team.start(self.codec.compress(), COMPRESSOR, stdin=subprocess.PIPE,
                                  stdout=out).stdin
            self._proc = team.start(argv, SORT, stdin=subprocess.PIPE, stdout=sink)
        if sink is not out:
            sink.close()  # the compressor's input is the sort's alone: EOF when the sort ends
        self.runs.append(Run(path, self.keyed, codec=self.codec))
        self._filled = 0

    def _end_run(self) -> None:
        """Close the current spill; it sorts while the next one fills (two at most)."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            self._failed()
        self._wait_pending()
        self._pending, self._team, self._proc = self._team, None, None

    def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.finish()

    def _failed(self) -> NoReturn:
        """The current spill's processes have failed: raise their error."""
        assert self._team is not None
        team, self._team, self._proc = self._team, None, None
        team.finish()
        raise SortFailed(f"{team.what} failed: sort ended early")

    @contextmanager
    def _killed_on_error(self) -> Iterator[None]:
        """No spill process outlives a failure (the map attempt goes on to report it)."""
        try:
            yield
        except BaseException:
            for team in (self._team, self._pending):
                if team is not None:
                    team.kill()
            self._team = self._pending = self._proc = None
            raise

    def close(self, keep_small: bool = False) -> list[Run]:
        """The runs. With `keep_small`, output that stayed small and held is left sorted in
        `self.small` instead, for a caller that needs no file of it (`shuffle.append_pack`)."""
        with self._killed_on_error():
            last = self._lines.flush()
            if last:
                self._write_lines(last)
            if keep_small and not self.runs and self._proc is None:
                self.small = self._sorted_held()
                return self.runs
            if self._held:
                self._write_held()
            if self._proc is not None:
                self._end_run()
            self._wait_pending()
        return self.runs


class SortFailed(OSError):
    """A `sort` (or a compressor of its runs) failed; the message says what it was doing and
    why, in one line."""


def sort_failed(proc: subprocess.Popen[bytes], what: str, where: str) -> SortFailed:
    """The error for a failed sort (or compressor), from its stderr (read once it has exited):
    a full disk is named as such, with the directory, instead of sort's raw `write failed`."""
    status = proc.wait()
    err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
    program = os.path.basename(str(cast(list[str], proc.args)[0]))
    return SortFailed(f"{what} failed: {describe_sort_error(err, status, where, program)}")


def describe_sort_error(err: str, status: int, where: str, program: str = "sort") -> str:
    if "No space left on device" in err:
        return f"no space left on device in {where}"
    last = err.splitlines()[-1] if err else ""
    if last:
        return last.removeprefix("sort: ")
    if status < 0:
        return f"{program} was killed by signal {-status}"
    return f"{program} exited with status {status}"


def merge_command(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str) -> list[str]:
    keyed = any(r.keyed for r in runs)
    return sort_command(order, keyed, buffer, tmpdir, merge=True) + [r.path for r in runs]


def merge_to_file(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str, path: str,
                  what: str) -> None:
    """The runs merged into `path`: a single plain run is renamed, else `sort -m` (or a single
    compressed run's decompressor) writes it."""
    if len(runs) == 1 and runs[0].codec is None:
        os.replace(runs[0].path, path)
        return
    with (_fanned_in(order, runs, buffer, tmpdir, what) as runs,
          open(path + ".tmp", "wb") as out, Team(what, tmpdir) as team):
        _merge(order, runs, buffer, tmpdir, out, team)
    os.replace(path + ".tmp", path)


@contextmanager
def merged_runs(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str,
                what: str) -> Iterator[IO[bytes]]:
    """The runs as one sorted stream of plain lines, to be read to its end: a single plain
    run's own file, else the output of `sort -m` (or of a single compressed run's
    decompressor). Its processes are waited for after the block, or killed if it failed."""
    if len(runs) == 1 and runs[0].codec is None:
        with open(runs[0].path, "rb") as f:
            yield f
        return
    with _fanned_in(order, runs, buffer, tmpdir, what) as runs, Team(what, tmpdir) as team:
        stream = _merge(order, runs, buffer, tmpdir, subprocess.PIPE, team)
        assert stream is not None
        yield stream


def _merge(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str, stdout: Any,
           team: Team) -> IO[bytes] | None:
    """Start the processes that write the runs' merge to `stdout` (its read end, if a pipe):
    `sort -m` reading each compressed run from its decompressor's pipe, as /dev/fd/N."""
    if len(runs) == 1 and runs[0].codec is not None:
        return _decompressor(runs[0], team, stdout).stdout
    unzips = {i: _decompressor(r, team, subprocess.PIPE) for i, r in enumerate(runs) if r.codec}
    fds = {i: cast(IO[bytes], p.stdout).fileno() for i, p in unzips.items()}
    paths = [f"/dev/fd/{fds[i]}" if i in fds else r.path for i, r in enumerate(runs)]
    compress = next((r.codec.program for r in runs if r.codec is not None), None)
    argv = sort_command(order, any(r.keyed for r in runs), buffer, tmpdir, merge=True,
                        compress=compress) + paths
    merge = team.start(argv, SORT, stdout=stdout, pass_fds=list(fds.values()))
    for proc in unzips.values():
        cast(IO[bytes], proc.stdout).close()  # the merge's alone: EPIPE if it dies
    return merge.stdout


def _decompressor(run: Run, team: Team, stdout: Any) -> subprocess.Popen[bytes]:
    assert run.codec is not None
    with open(run.path, "rb") as f:
        return team.start(run.codec.decompress(), DECOMPRESSOR, stdin=f, stdout=stdout)


@contextmanager
def _fanned_in(order: SortOrder, runs: list[Run], buffer: int, tmpdir: str,
               what: str) -> Iterator[list[Run]]:
    """At most FAN_IN runs when they are compressed (one decompressor each, so processes and
    descriptors stay bounded): more are merged FAN_IN consecutive runs at a time (equal keys
    keep their order) into compressed runs, removed after the block."""
    made: list[str] = []
    try:
        while len(runs) > FAN_IN and any(r.codec is not None for r in runs):
            groups = [runs[i:i + FAN_IN] for i in range(0, len(runs), FAN_IN)]
            runs = [_merge_group(order, group, buffer, tmpdir, what, made) for group in groups]
        yield runs
    finally:
        for path in made:
            if os.path.exists(path):
                os.unlink(path)


def _merge_group(order: SortOrder, group: list[Run], buffer: int, tmpdir: str, what: str,
                 made: list[str]) -> Run:
    """The group merged into one compressed run (its path added to `made`); the group's files
    are removed, so the disk holds each record about once."""
    if len(group) == 1:
        return group[0]
    codec = next(r.codec for r in group if r.codec is not None)
    path = os.path.join(tmpdir, f"merge{len(made)}.out{codec.suffix}")
    made.append(path)
    with open(path, "wb") as out, Team(what, tmpdir) as team:
        compressor = team.start(codec.compress(), COMPRESSOR, stdin=subprocess.PIPE, stdout=out)
        _merge(order, group, buffer, tmpdir, compressor.stdin, team)
    for run in group:
        os.unlink(run.path)
    return Run(path, any(r.keyed for r in group), sum(r.records for r in group), codec)
