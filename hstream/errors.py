"""The one exception type users see; the CLI turns it into one line and an exit status.

Exit codes follow Hadoop Streaming's `StreamJob`: 1 job failed or a command line it cannot
parse (its IllegalArgumentException), 3 invalid configuration, 4 output exists, 5 anything
else, a missing input included (Hadoop 3 raises InvalidInputException, an IOException: 5).
"""

from __future__ import annotations

JOB_FAILED = 1
USAGE = 1
INPUT_NOT_FOUND = 5
INVALID_CONFIG = 3
OUTPUT_EXISTS = 4
OTHER = 5
INTERRUPTED = 130


class HstreamError(Exception):
    """An error meant for the user: `str(e)` is the whole message, `exit_code` the status."""

    exit_code = OTHER

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(HstreamError):
    exit_code = INVALID_CONFIG


class UsageError(HstreamError):
    """A command line StreamJob cannot parse: no arguments, an unknown option, a stray word."""

    exit_code = USAGE


class InputNotFound(HstreamError):
    exit_code = INPUT_NOT_FOUND


class OutputExists(HstreamError):
    exit_code = OUTPUT_EXISTS


class JobFailed(HstreamError):
    exit_code = JOB_FAILED


class ProtocolError(HstreamError):
    """A peer sent something unauthenticated or malformed; the connection is dropped."""


class BadMessage(ProtocolError):
    """An authenticated message that does not match its op's schema (`hstream.messages`): that
    one request is refused with this message; the connection and the daemon go on."""

    exit_code = INVALID_CONFIG
