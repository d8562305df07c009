"""Which files a job reads: FileInputFormat's listing. Comma lists and globs expand; a directory
gives its files, without the hidden ones (names starting with `_` or `.`). Stdlib only.
"""

from __future__ import annotations

import glob
import os

from hstream.errors import InputNotFound


def _hidden(path: str) -> bool:
    return os.path.basename(path).startswith(("_", "."))


def list_inputs(patterns: list[str]) -> list[str]:
    """Absolute paths of the input files; InputNotFound names the first pattern that matches
    nothing."""
    files: list[str] = []
    for pattern in patterns:
        for item in (p for p in pattern.split(",") if p):
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            if not matches or not all(os.path.exists(m) for m in matches):
                raise InputNotFound(f"input path does not exist: {item}")
            for match in matches:
                files += _expand(match)
    return files


def _expand(path: str) -> list[str]:
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        found = [os.path.join(path, n) for n in names if not _hidden(n)]
        return [os.path.abspath(p) for p in found if os.path.isfile(p)]
    if not os.access(path, os.R_OK):
        raise InputNotFound(f"input file is not readable: {path}")
    return [os.path.abspath(path)]
