"""The pages as HTML strings: the jobs, one job, one attempt, the workers.

Every value from a job (names, commands, stderr, status messages) goes through `escape`; the
pages carry no script (a running job's page reloads itself with a meta refresh).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from hstream.cluster.history import RUNNING, AttemptRecord, JobRecord, Summary
from hstream.web import charts

#: Failed attempts whose stderr is shown on the job page itself; the rest are a click away.
INLINE_FAILURES = 20
REFRESH = 2

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222}
a{color:#1a5fa8;text-decoration:none}a:hover{text-decoration:underline}
nav a{margin-right:14px;font-weight:600}h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}
pre{background:#f7f7f7;border:1px solid #ddd;padding:8px;overflow:auto;max-height:480px;
white-space:pre-wrap}.state{font-weight:600}.succeeded{color:#1b7a2e}.failed{color:#c0392b}
.killed,.lost,.dead{color:#7f5a9e}.running,.queued{color:#1a5fa8}.alive{color:#1b7a2e}
svg text{font:11px system-ui,sans-serif;fill:#333}
path.axis,path.tick{stroke:#555}path.grid{stroke:#e2e2e2}
path.bar{stroke:none}path.bar.map{fill:#4a86c5}path.bar.reduce{fill:#e8943a}
path.bar.failed{fill:#d64541}path.bar.killed{fill:#aaa}path.bar.lost{fill:#8e44ad}
path.bar.running{fill-opacity:.45}.legend{margin:4px 0 10px}.key{margin-right:14px}
.att{margin-right:6px}
"""


def page(title: str, body: str, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH}">' if refresh else ""
    return (f'<!doctype html><html><head><meta charset="utf-8">{meta}'
            f"<title>{escape(title)} · hstream</title><style>{STYLE}</style></head><body>"
            f'<nav><a href="/">Jobs</a><a href="/workers">Workers</a></nav>{body}</body></html>')


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def state(value: str) -> str:
    return f'<span class="state {escape(value)}">{escape(value)}</span>'


def table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Cells are HTML already (escaped by whoever made them)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in pairs) + \
        "</table>"


def link_job(job_id: str) -> str:
    return f'<a href="/job/{escape(job_id)}">{escape(job_id)}</a>'


def link_attempt(job_id: str, a: AttemptRecord, text: str | None = None) -> str:
    return (f'<a class="att {escape(a.outcome)}" href="/job/{escape(job_id)}/attempt/'
            f'{escape(a.id)}" title="{escape(a.outcome)}">{escape(text or a.id)}</a>')


# -- jobs -----------------------------------------------------------------------------------


def jobs_page(jobs: list[Summary], now: float, where: str) -> str:
    rows = [[link_job(s.id), escape(s.name), state(s.state), when(s.submitted),
             duration((s.finished or now) - s.submitted), str(s.maps), str(s.reduces),
             str(s.attempts), str(s.failed), escape(s.output)] for s in jobs]
    body = (f"<h1>Jobs</h1><p>{escape(where)}: {len(jobs)} jobs, newest first.</p>"
            + table(["Job", "Name", "State", "Submitted", "Duration", "Maps", "Reduces",
                     "Attempts", "Failed attempts", "Output"], rows))
    return page("Jobs", body, refresh=any(s.state in RUNNING for s in jobs))


# -- one job --------------------------------------------------------------------------------


def job_page(record: JobRecord, now: float, stderr: Callable[[str], str | None]) -> str:
    by_task = tasks_of(record)
    parts = [f"<h1>{escape(record.id)} {state(record.state)}</h1>", _job_fields(record, now),
             _failures(record, stderr),
             "<h2>Input, shuffle and output rates (MB/s)</h2>", charts.rates_legend(),
             charts.rates(record, now),
             "<h2>Attempts over time, one lane per worker slot</h2>", charts.legend(),
             charts.timeline(record, now),
             "<h2>Map tasks</h2>", _tasks(record, "map", record.maps, by_task, now),
             "<h2>Reduce tasks</h2>", _tasks(record, "reduce", record.reduces, by_task, now),
             "<h2>Counters</h2>", _counters(record.counters), _configuration(record)]
    return page(record.id, "".join(parts), refresh=record.state in RUNNING)


def tasks_of(record: JobRecord) -> dict[tuple[str, int], list[AttemptRecord]]:
    out: dict[tuple[str, int], list[AttemptRecord]] = defaultdict(list)
    for a in record.attempts.values():
        out[(a.kind, a.index)].append(a)
    for attempts in out.values():
        attempts.sort(key=lambda a: (a.start, a.number))
    return out


def _job_fields(record: JobRecord, now: float) -> str:
    spec = record.spec
    attempts = list(record.attempts.values())
    counts: dict[str, int] = defaultdict(int)
    for a in attempts:
        counts[a.outcome] += 1
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    pairs = [("Name", escape(record.name)), ("Submitted", when(record.submitted)),
             ("Finished", when(record.finished)),
             ("Duration", duration(record.ended(now) - record.submitted)),
             ("Mapper", f"<code>{escape(str(spec.get('mapper', '')))}</code>"),
             ("Reducer", f"<code>{escape(str(spec.get('reducer', '')))}</code>"),
             ("Input", escape(", ".join(spec.get("inputs", [])))),
             ("Output", escape(record.output)),
             ("Tasks", f"{record.maps} maps, {record.reduces} reduces"),
             ("Attempts", f"{len(attempts)} ({escape(outcomes)})")]
    if record.message:
        pairs.append(("Message", f"<pre>{escape(record.message)}</pre>"))
    return fields(pairs)


def _failures(record: JobRecord, stderr: Callable[[str], str | None]) -> str:
    failed = [a for a in record.attempts.values() if a.failed]
    if not failed:
        return ""
    parts = [f"<h2>Failed attempts ({len(failed)})</h2>"]
    for a in failed[:INLINE_FAILURES]:
        text = stderr(a.id) if a.stderr else None
        exit_status = f", exit status {a.exit_status}" if a.exit_status is not None else ""
        parts.append(f'<div class="failure"><b>{link_attempt(record.id, a)}</b> on '
                     f"{escape(a.worker)} ({escape(a.host)}){exit_status}: {escape(a.error)}"
                     f'<pre class="stderr">{escape(text or "(no stderr)")}</pre></div>')
    if len(failed) > INLINE_FAILURES:
        rest = " ".join(link_attempt(record.id, a) for a in failed[INLINE_FAILURES:])
        parts.append(f"<p>More failed attempts: {rest}</p>")
    return "".join(parts)


def _tasks(record: JobRecord, kind: str, n: int,
           by_task: dict[tuple[str, int], list[AttemptRecord]], now: float) -> str:
    if n == 0:
        return "<p>None.</p>"
    head = ["Task", "State", "Attempts", "Host", "Duration", "Records in", "Records out",
            "Status"]
    return table(head, (_task_row(record, kind, i, by_task.get((kind, i), []), now)
                        for i in range(n)))


RECORDS = {"map": ("Map input records", "Map output records"),
           "reduce": ("Reduce input records", "Reduce output records")}


def task_state(attempts: list[AttemptRecord], job_state: str) -> str:
    outcomes = {a.outcome for a in attempts}
    if "running" in outcomes:
        return "running"
    if "succeeded" in outcomes:
        return "succeeded"
    if "failed" in outcomes and job_state not in RUNNING:
        return "failed"
    return "pending" if job_state in RUNNING else "killed"


def _task_row(record: JobRecord, kind: str, index: int, attempts: list[AttemptRecord],
              now: float) -> list[str]:
    won = next((a for a in reversed(attempts) if a.outcome == "succeeded"), None)
    shown = won or (attempts[-1] if attempts else None)
    counters = won.counters.get("Map-Reduce Framework", {}) if won else {}
    task = f"{kind} {index}"
    if shown is None:
        return [task, state(task_state([], record.state)), "", "", "", "", "", ""]
    links = " ".join(link_attempt(record.id, a, f"#{a.number}") for a in attempts)
    spent = (shown.end or record.ended(now)) - shown.start
    return [f'<span title="{escape(shown.task)}">{task}</span>',
            state(task_state(attempts, record.state)), links,
            f"{escape(shown.worker)} ({escape(shown.host)})", duration(spent),
            str(counters.get(RECORDS[kind][0], "")), str(counters.get(RECORDS[kind][1], "")),
            escape(shown.status)]


def _counters(counters: dict[str, dict[str, int]]) -> str:
    rows = [[escape(g), escape(n), str(v)] for g in sorted(counters)
            for n, v in sorted(counters[g].items())]
    return table(["Group", "Counter", "Value"], rows) if rows else "<p>None yet.</p>"


def _configuration(record: JobRecord) -> str:
    spec = dict(record.spec)
    conf: dict[str, Any] = spec.pop("conf", {}) or {}
    rows = [[escape(k), f"<code>{escape(str(v))}</code>"] for k, v in sorted(spec.items())]
    rows += [[escape(k), f"<code>{escape(str(v))}</code>"] for k, v in sorted(conf.items())]
    return ("<details><summary><b>Configuration</b></summary>"
            + table(["Setting", "Value"], rows) + "</details>")


# -- one attempt ----------------------------------------------------------------------------


def attempt_page(record: JobRecord, a: AttemptRecord, stderr: str | None, now: float) -> str:
    end = a.end or record.ended(now)
    pairs = [("Job", link_job(record.id)), ("Task", escape(a.task)),
             ("Outcome", state(a.outcome)), ("Worker", f"{escape(a.worker)} ({escape(a.host)})"),
             ("Started", when(a.start)), ("Ended", when(a.end)),
             ("Duration", duration(end - a.start)),
             ("Exit status", "" if a.exit_status is None else str(a.exit_status)),
             ("Error", escape(a.error)), ("Status", escape(a.status)),
             ("Speculative", "yes" if a.speculative else "no"),
             ("Bytes read / fetched / written", f"{a.read:,} / {a.fetched:,} / {a.written:,}")]
    raw = f'/job/{escape(record.id)}/attempt/{escape(a.id)}/stderr'
    body = (f"<h1>{escape(a.id)}</h1>" + fields(pairs)
            + f'<h2>stderr (its last 64 KiB; <a href="{raw}">as text</a>)</h2>'
            + f'<pre class="stderr">{escape(stderr or "(none)")}</pre>'
            + "<h2>Counters</h2>" + _counters(a.counters))
    return page(a.id, body, refresh=a.outcome == "running")


# -- workers --------------------------------------------------------------------------------


def workers_page(workers: list[dict[str, Any]] | None, job_of: Callable[[str], str]) -> str:
    if workers is None:
        body = ("<h1>Workers</h1><p>No cluster here: this page serves the job history "
                "(<code>hstream ui</code>).</p>")
        return page("Workers", body)
    rows = [[escape(str(w["id"])), escape(str(w["host"])),
             state("alive" if w["alive"] else "dead"), f"{w['last_heartbeat']:.1f} s ago",
             str(w["slots"]),
             " ".join(f'<a href="/job/{escape(job_of(a))}/attempt/{escape(a)}">{escape(a)}</a>'
                      for a in w["running"])] for w in workers]
    alive = sum(bool(w["alive"]) for w in workers)
    body = (f"<h1>Workers</h1><p>{alive} of {len(workers)} alive.</p>"
            + table(["Worker", "Host", "State", "Last heartbeat", "Slots", "Running attempts"],
                    rows))
    return page("Workers", body, refresh=True)


def message_page(title: str, text: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")
