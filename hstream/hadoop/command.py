"""Turning a `-mapper`/`-reducer` string into a process the way Hadoop Streaming does.

No shell: the string is split on spaces honouring '...' and "..." quotes
(PipeMapRed.splitArgs), the program is looked up in the task's working
directory first and then on PATH, and every job property reaches the process
as an environment variable with non-alphanumerics turned into `_`.
Stdlib only.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys

from hstream.hadoop import properties

#: Commands that name Hadoop's Java classes run hstream's own Python versions.
BUILTINS = {
    "aggregate": "hstream.hadoop.aggregate",
    "org.apache.hadoop.mapred.lib.aggregate.ValueAggregatorReducer": "hstream.hadoop.aggregate",
    "org.apache.hadoop.mapred.lib.aggregate.ValueAggregatorCombiner": "hstream.hadoop.aggregate",
    "org.apache.hadoop.mapred.lib.FieldSelectionMapReduce": "hstream.hadoop.fieldsel",
    "org.apache.hadoop.mapred.lib.IdentityMapper": "cat",
    "org.apache.hadoop.mapred.lib.IdentityReducer": "cat",
}


def split_command(command: str) -> list[str]:
    """Split like Hadoop's splitArgs: spaces separate, quotes group, nothing else is special."""
    args: list[str] = []
    current: list[str] = []
    quote = ""
    started = False
    for ch in command:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch in "'\"":
            quote, started = ch, True
        elif ch in " \t":
            if started or current:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
    if started or current:
        args.append("".join(current))
    return args


def is_java_builtin(command: str | None) -> bool:
    """True for the Java classes hstream runs itself (not the identity ones, which are `cat`):
    like Hadoop's Java reducers they write finished output lines, not streaming lines."""
    argv = split_command(command or "")
    return bool(argv) and BUILTINS.get(argv[0], "cat") != "cat"


def builtin_argv(argv: list[str], kind: str) -> list[str] | None:
    """The argv of a built-in (aggregate, field selection, identity), or None."""
    module = BUILTINS.get(argv[0]) if argv else None
    if module is None:
        return None
    if module == "cat":
        return ["cat"]
    return [sys.executable, "-m", module, kind, *argv[1:]]


def resolve(command: str, cwd: str, path: str | None = None, kind: str = "map") -> list[str]:
    """The argv to exec; FileNotFoundError/PermissionError name the program."""
    argv = split_command(command)
    if not argv:
        raise FileNotFoundError("empty command")
    builtin = builtin_argv(argv, kind)
    if builtin is not None:
        return builtin
    program = argv[0]
    if os.sep in program:
        full = program if os.path.isabs(program) else os.path.join(cwd, program)
        if not os.path.isabs(program) and os.path.isfile(full) and _owned(full, cwd):
            make_executable(full)
        _check_executable(full, program)
        return [os.path.abspath(full), *argv[1:]]
    local = os.path.join(cwd, program)
    if os.path.isfile(local):
        make_executable(local)
        _check_executable(local, program)
        return [local, *argv[1:]]
    search = path if path is not None else os.environ.get("PATH")
    found = _which(program, search)
    if found is None or not os.access(found, os.X_OK):  # not there (any more): look again
        _which.cache_clear()
        found = _which(program, search)
    if found is None:
        raise FileNotFoundError(f"command not found: {program}")
    return [found, *argv[1:]]


@functools.lru_cache(maxsize=16)
def _which(program: str, path: str | None) -> str | None:
    """`shutil.which`, remembered: a runner starts the same command for map after map of a
    job, and the search tests every directory of a long PATH. A program that went away is
    searched for again (`resolve`)."""
    return shutil.which(program, path=path)


def _owned(path: str, cwd: str) -> bool:
    """Whether `path` is the task's own: its directory lies inside the task's directory."""
    home = os.path.realpath(cwd)
    return os.path.commonpath([home, os.path.realpath(os.path.dirname(path))]) == home


def make_executable(path: str) -> None:
    """What Hadoop does to a relative program in the task's directory (`chmod a+x`), done to
    the task's own copy: a shipped file is a link to the user's file, so a link is first
    replaced by a copy, and the user's file is never touched."""
    if os.access(path, os.X_OK):
        return
    if os.path.islink(path):
        tmp = f"{path}.{os.getpid()}.copy"
        shutil.copyfile(path, tmp)
        os.replace(tmp, path)
    os.chmod(path, os.stat(path).st_mode | 0o111)


def _check_executable(full: str, program: str) -> None:
    if not os.path.isfile(full):
        raise FileNotFoundError(f"command not found: {program}")
    if not os.access(full, os.X_OK):
        raise PermissionError(f"command is not executable: {program}")


_UNSAFE = re.compile(r"[^A-Za-z0-9]")


@functools.lru_cache(maxsize=8192)
def env_name(key: str) -> str:
    """Hadoop's safeEnvVarName: every non-alphanumeric character becomes `_`."""
    return _UNSAFE.sub("_", key)


def unescape(text: str) -> bytes:
    """A separator from the job configuration as bytes; `\\t`-style escapes are honoured
    (a lone or unknown backslash stays a backslash)."""
    try:
        return text.encode("utf-8").decode("unicode_escape").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return text.encode("utf-8")


def conf_from_env(name: str, default: str, env: dict[str, str] | None = None) -> str:
    """A job property as a built-in sees it: every property is in the task's environment."""
    return (os.environ if env is None else env).get(env_name(name), default)


#: Property prefixes never truncated in the task environment (the built-ins read them there).
WHOLE_SETTINGS = ("stream.", "mapreduce.fieldsel.", "mapreduce.output.textoutputformat.",
                  "hstream.")


def task_environment(conf: dict[str, str], cmdenv: dict[str, str], base: dict[str, str],
                     truncate: int = -1) -> dict[str, str]:
    """The environment a task's command sees: base, then the job's properties, then -cmdenv.

    `stream.jobconf.truncate.limit` (`truncate`) shortens values, except the settings the
    built-ins read from here, which are short and must arrive whole (`_named`)."""
    env = dict(base)
    env.update(_named(conf, truncate))
    env.update(cmdenv)
    return env


def attempt_environment(job: dict[str, str], own: dict[str, str], cmdenv: dict[str, str],
                        base: dict[str, str], truncate: int = -1) -> dict[str, str]:
    """`task_environment(attempt_view(job, own), …)` for attempt after attempt of one job: the
    job's ~1,800 variables are named once per job and copied in C; only the few dozen that
    depend on the attempt are named each time, over it: as in the whole view, where they come
    last or keep their place. A job view where two properties have one variable name (`a.b`
    and `a_b`) takes the whole way, which keeps the later one's value."""
    view, over = properties.attempt_overlay(job, own)
    named = _job_named(view, truncate)
    if named is None:
        return task_environment({**view, **over}, cmdenv, base, truncate)
    env = dict(base)
    env.update(named)
    env.update(_named(over, truncate))
    env.update(cmdenv)
    return env


def _named(conf: dict[str, str], truncate: int) -> dict[str, str]:
    """Properties under their variable names; `stream.jobconf.truncate.limit` (`truncate`)
    shortens values, except the settings the built-ins read from here."""
    if truncate < 0:  # the usual case: names from the cache, in C
        return dict(zip(map(env_name, conf), conf.values(), strict=True))
    return {env_name(key): value if key.startswith(WHOLE_SETTINGS) else value[:truncate]
            for key, value in conf.items()}


#: The last job view named by `_job_named`, its truncation and the result (a runner serves
#: one job): (view, truncate, named or None).
_last_named: list[tuple[dict[str, str], int, dict[str, str] | None]] = []


def _job_named(view: dict[str, str], truncate: int) -> dict[str, str] | None:
    """`_named(view)`, made once per job view; None if two properties share a name."""
    for seen, cut, named in _last_named:
        if seen is view and cut == truncate:
            return named
    named = _named(view, truncate)
    _last_named[:] = [(view, truncate, named if len(named) == len(view) else None)]
    return _last_named[0][2]
