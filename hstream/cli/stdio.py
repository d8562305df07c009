"""`-input -` and `-output -`: hstream as one stage of a shell pipeline.

Standard input is spooled to a hidden file next to the output (the tasks already write to that
filesystem, so they can read it there; with `shared_fs = no` the manager's relay serves it like
any input), then split like any file. `-output -` runs the job into a private temporary
directory and copies its part files to standard output, in part order, once the job has
committed. Whatever happens (the job fails, Ctrl-C, the reader stops reading), the spool and the
temporary directory are gone when hstream exits.
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from hstream.errors import ConfigError, HstreamError
from hstream.hadoop.streaming import STDIO
from hstream.job import JobSpec

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


def uses_stdio(spec: JobSpec) -> bool:
    return spec.output == STDIO or STDIO in spec.inputs


@contextmanager
def piped(spec: JobSpec) -> Iterator[bool]:
    """Swap `-` in `spec` for real paths while the job runs, and remove them afterwards.
    Yields whether the output goes to standard output."""
    made: list[str] = []
    try:
        to_stdout = spec.output == STDIO
        if to_stdout:
            made.append(_private_dir())
            spec.output = os.path.join(made[-1], "output")
        if STDIO in spec.inputs:
            made.append(_spool_path(spec.output))
            _spool_stdin(made[-1])
            spec.inputs = [made[-1] if i == STDIO else i for i in spec.inputs]
        yield to_stdout
    finally:
        for path in reversed(made):
            _remove(path)


def _private_dir() -> str:
    """A fresh directory under $TMPDIR, made like `mkdir` (the umask decides who may write)."""
    path = os.path.join(tempfile.gettempdir(), f"hstream-stdout-{secrets.token_hex(8)}")
    try:
        os.mkdir(path)
    except OSError as e:
        raise HstreamError(f"-output -: cannot create {path}: {e.strerror}") from None
    return path


def _spool_path(output: str) -> str:
    parent, name = os.path.split(output)
    if not os.path.isdir(parent):
        raise HstreamError(f"output directory's parent does not exist: {parent}")
    return os.path.join(parent, f".{name}.hstream-stdin-{secrets.token_hex(8)}")


def _spool_stdin(path: str) -> None:
    """Copy all of standard input to `path` (created here, so a clash is an error)."""
    if sys.stdin is None:
        raise ConfigError("-input -: standard input is closed")
    try:
        with open(path, "xb") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, CHUNK)
    except OSError as e:
        raise HstreamError(f"-input -: cannot spool standard input to {path}: {e}") from None
    logger.info("standard input spooled to %s (%d bytes)", path, os.path.getsize(path))


def write_output(output: str) -> None:
    """The part files' bytes on standard output, in part order: what `cat out/part-*` gives.
    A reader that stops early (`| head`) ends hstream as SIGPIPE ends `cat`: status 141, quietly."""
    out = sys.stdout.buffer
    try:
        for part in sorted(glob.glob(os.path.join(glob.escape(output), "part-*"))):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, CHUNK)
        out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        raise SystemExit(128 + signal.SIGPIPE) from None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
