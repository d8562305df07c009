"""Which files a job reads: FileInputFormat's listing. Comma lists and globs expand; a directory
gives its files, without the hidden ones (names starting with `_` or `.`) and subdirectories.
Only regular files are read: a FIFO, device or socket (`/dev/zero`, a named pipe) is refused,
by name, before anything opens it (opening a FIFO blocks). Both the client and the manager
list through here. Stdlib only.
"""

from __future__ import annotations

import glob
import os
import stat

from hstream.errors import InputNotFound


def _hidden(path: str) -> bool:
    return os.path.basename(path).startswith(("_", "."))


RECURSIVE = "mapreduce.input.fileinputformat.input.dir.recursive"


def split_paths(text: str) -> list[str]:
    """A comma list of paths, as FileInputFormat.getPathStrings splits it: commas inside a
    glob's `{a,b}` belong to the glob."""
    paths, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}" and depth > 0)
        if ch == "," and depth == 0:
            paths.append(text[start:i])
            start = i + 1
    paths.append(text[start:])
    return [p for p in paths if p]


def expand_braces(pattern: str) -> list[str]:
    """Hadoop's glob alternatives, `{a,b}`, as separate patterns (nested ones too)."""
    open_at = pattern.find("{")
    if open_at < 0:
        return [pattern]
    depth = 0
    for i in range(open_at, len(pattern)):
        depth += (pattern[i] == "{") - (pattern[i] == "}")
        if depth == 0:
            head, body, tail = pattern[:open_at], pattern[open_at + 1:i], pattern[i + 1:]
            return [e for alt in split_paths(body) or [""]
                    for e in expand_braces(head + alt + tail)]
    return [pattern]


def list_inputs(patterns: list[str], conf: dict[str, str] | None = None) -> list[str]:
    """Absolute paths of the input files; InputNotFound names the first pattern that matches
    nothing. With input.dir.recursive, directories inside an input directory are read too."""
    recursive = (conf or {}).get(RECURSIVE, "false").lower() == "true"
    files: list[str] = []
    for pattern in patterns:
        for item in split_paths(pattern):
            matches = _glob(item)
            if not matches or not all(os.path.exists(m) for m in matches):
                raise InputNotFound(f"input path does not exist: {item}")
            for match in matches:
                files += _expand(match, recursive)
    return files


def _glob(item: str) -> list[str]:
    if not glob.has_magic(item) and "{" not in item:
        return [item]
    return sorted({m for p in expand_braces(item) for m in glob.glob(p)})


def _expand(path: str, recursive: bool = False) -> list[str]:
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        found = [os.path.join(path, n) for n in names if not _hidden(n)]
        if recursive:
            return [f for p in found for f in _expand(p, True)]
        return [_regular(p) for p in found if not os.path.isdir(p)]
    if not os.access(path, os.R_OK):
        raise InputNotFound(f"input file is not readable: {path}")
    return [_regular(path)]


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _regular(path: str) -> str:
    """The absolute path of a regular file; InputNotFound names anything else (stat, unlike
    open, never blocks on a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise InputNotFound(f"input file is not readable: {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise InputNotFound(f"input is not a regular file ({kind}): {path}")
    return os.path.abspath(path)
