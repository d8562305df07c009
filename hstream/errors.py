"""The one exception type users see; the CLI turns it into one line and an exit status.

Exit codes follow Hadoop Streaming's `StreamJob`: 1 job failed, 2 input path not
found, 3 invalid configuration, 4 output exists, 5 anything else.
"""

from __future__ import annotations

JOB_FAILED = 1
INPUT_NOT_FOUND = 2
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


class InputNotFound(HstreamError):
    exit_code = INPUT_NOT_FOUND


class OutputExists(HstreamError):
    exit_code = OUTPUT_EXISTS


class JobFailed(HstreamError):
    exit_code = JOB_FAILED


class ProtocolError(HstreamError):
    """A peer sent something unauthenticated or malformed; the connection is dropped."""
