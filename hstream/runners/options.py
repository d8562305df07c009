"""The runner's own command-line words, taken out before Hadoop Streaming's parser sees the rest.

`--runner local|spark`, `--master URL` and `--spark-conf KEY=VALUE` (repeatable), also as
`--runner=spark`. They are hstream's, like `--workers`, so Hadoop's option table stays Hadoop's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hstream.errors import ConfigError

RUNNERS = ("local", "spark")
_WORDS = ("runner", "master", "spark-conf")


@dataclass
class RunnerOptions:
    """Which engine runs the job, and how to reach it."""

    runner: str = "local"
    master: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)


def extract(args: list[str]) -> tuple[RunnerOptions, list[str]]:
    """(the runner options, the remaining words); ConfigError names a bad one."""
    opts, rest = RunnerOptions(), []
    words = iter(args)
    for word in words:
        name, eq, value = word.lstrip("-").partition("=")
        if not word.startswith("-") or name not in _WORDS:
            rest.append(word)
            continue
        if not eq:
            following = next(words, None)
            if following is None:
                raise ConfigError(f"{word} needs a value")
            value = following
        _set(opts, name, value)
    _check(opts)
    return opts, rest


def _set(opts: RunnerOptions, name: str, value: str) -> None:
    if name == "runner":
        opts.runner = value
    elif name == "master":
        opts.master = value
    else:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"--spark-conf must be KEY=VALUE: {value}")
        opts.spark_conf[key] = val


def _check(opts: RunnerOptions) -> None:
    if opts.runner not in RUNNERS:
        raise ConfigError(f"unknown --runner {opts.runner} (want {' or '.join(RUNNERS)})")
    if opts.runner != "spark" and (opts.master or opts.spark_conf):
        raise ConfigError("--master and --spark-conf need --runner spark")
