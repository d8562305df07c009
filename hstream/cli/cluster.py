"""`hstream cluster up|down|status`, `hstream job list|history|status|kill|logs`, `hstream ui`.

`job status` and `job logs` ask the running manager about a job it knows, and read the job
history (history.py) for the others: finished jobs, embedded runs, jobs of a manager that is
gone. The history lives under the cluster's manager workdir and under $HSTREAM_HOME/history
(~/.hstream/history) for embedded runs; both are read.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import click

from hstream import protocol
from hstream.cluster import config, history
from hstream.cluster.client import Client, format_counters
from hstream.cluster.history import AttemptRecord, JobRecord
from hstream.errors import ConfigError, HstreamError

CONFIG_HELP = "cluster.ini to use (default: $HSTREAM_CONFIG, then ./cluster.ini)."


def _config(path: str | None) -> config.ClusterConfig:
    found = config.find_config(path)
    if found is None:
        raise ConfigError("no cluster.ini here: pass --config FILE or set HSTREAM_CONFIG")
    return config.load(found)


def _manager(path: str | None) -> tuple[config.ClusterConfig, Client]:
    from hstream.cluster import launcher

    cfg = _config(path)
    client = launcher.manager_client(cfg)
    if client is None:
        raise HstreamError(f"the cluster of {cfg.path} is not up (hstream cluster up)")
    return cfg, client


@click.group()
def cluster() -> None:
    """Start, inspect and stop the cluster that cluster.ini describes."""


@cluster.command()
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
@click.option("--accept-new-host-keys", is_flag=True,
              help="Trust and record host keys not yet in known_hosts (a changed key is "
                   "always refused).")
def up(config_path: str | None, accept_new_host_keys: bool) -> None:
    """Start the manager here and a worker on every host (safe to run again)."""
    from hstream.cluster import launcher
    from hstream.cluster.localcluster import sweep_stale

    cfg = _config(config_path)
    sweep_stale()  # what local runs killed with SIGKILL left in $TMPDIR
    started = time.monotonic()
    results = launcher.Launcher(cfg, click.echo, accept_new_host_keys).up()
    failed = [r for r in results if not r.ok]
    ok = len(results) - len(failed)
    click.echo(f"cluster up: {ok} of {len(results)} hosts ready in "
               f"{time.monotonic() - started:.1f} s")
    _print_pages(cfg)
    if failed:
        raise HstreamError(f"{len(failed)} host(s) failed: "
                           + "; ".join(f"{r.host}: {r.reason}" for r in failed))


@cluster.command()
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def down(config_path: str | None) -> None:
    """Stop every worker and the manager, and clean the worker directories."""
    from hstream.cluster import launcher
    from hstream.cluster.localcluster import sweep_stale

    cfg = _config(config_path)
    sweep_stale()  # what local runs killed with SIGKILL left in $TMPDIR
    results = launcher.Launcher(cfg, click.echo).down()
    failed = [r for r in results if not r.ok]
    if failed:
        raise HstreamError(f"{len(failed)} host(s) not cleaned: "
                           + "; ".join(f"{r.host}: {r.reason}" for r in failed))
    click.echo(f"cluster down: {len(results)} hosts clean")


@cluster.command()
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def status(config_path: str | None) -> None:
    """The manager, each worker and the jobs."""
    from hstream.cluster import clusterstate, launcher

    cfg, client = _manager(config_path)
    state = clusterstate.read_state(cfg) or {}
    st = client.status()
    click.echo(f"manager: up on {client.host}:{client.port} (udp {state.get('heartbeat_port')}), "
               f"pid {state.get('pid')}, log {launcher.manager_log(cfg)}")
    _print_pages(cfg)
    known = {w["id"] for w in st["workers"]}
    click.echo(f"workers: {sum(w['alive'] for w in st['workers'])} alive")
    for w in st["workers"]:
        click.echo(f"  {w['id']:<24} {'alive' if w['alive'] else 'DEAD ':<5}  "
                   f"last heartbeat {w['last_heartbeat']:.1f} s ago  slots {w['slots']}  "
                   f"running {len(w['running'])}")
    for host in cfg.hosts:
        if launcher.worker_id(host) not in known:
            click.echo(f"  {launcher.worker_id(host):<24} not registered")
    _print_jobs(st["jobs"])


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    active = [j for j in jobs if j["state"] in ("queued", "running")]
    click.echo(f"jobs: {len(active)} queued or running, {len(jobs)} in all")
    for j in jobs:
        click.echo(f"  {j['id']:<20} {j['state']:<10} map {int(j['map'] * 100):>3}% "
                   f"reduce {int(j['reduce'] * 100):>3}%  {j['name']}")


def cluster_pages(cfg: config.ClusterConfig) -> tuple[str, int, bytes] | None:
    """(host, port, secret) of the running cluster's pages, if it serves them."""
    from hstream.cluster import clusterstate

    state = clusterstate.read_state(cfg) or {}
    port = state.get("web_port")
    if not isinstance(port, int) or not port or not os.path.exists(cfg.secret_file):
        return None
    host = cfg.manager_host if cfg.manager_host not in ("", "0.0.0.0", "::") \
        else socket.gethostname()
    return host, port, protocol.read_secret(cfg.secret_file)


def pages_url(pages: tuple[str, int, bytes], path: str = "/") -> str:
    from hstream.web import auth
    from hstream.web.server import page_url

    host, port, secret = pages
    return page_url(host, port, auth.token(secret), path)


def _print_pages(cfg: config.ClusterConfig) -> None:
    pages = cluster_pages(cfg)
    if pages is not None:
        click.echo(f"pages: {pages_url(pages)}")


def serve_pages(manager: Any, host: str, port: int) -> int:
    """Serve a manager's pages on host:port (its own address); the port they got."""
    from hstream.web import auth
    from hstream.web.server import WebServer
    from hstream.web.sources import ManagerSource

    return WebServer(host, port, auth.token(manager.secret), ManagerSource(manager)).start().port


@click.command()
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free one).")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def ui(port: int, config_path: str | None) -> None:
    """Serve the job history (embedded runs, and the cluster's) as web pages on loopback."""
    from hstream.web import auth
    from hstream.web.server import WebServer
    from hstream.web.sources import DiskSource

    roots = history_roots(config_path)
    secret = auth.local_secret(os.path.dirname(history.default_root()))
    server = WebServer("127.0.0.1", port, auth.token(secret), DiskSource(roots)).start()
    click.echo(f"Serving the job history in {', '.join(roots)} (Ctrl-C stops)")
    click.echo(f"Open: {server.url()}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    server.stop()


@click.group()
def job() -> None:
    """Jobs: of the running cluster, and in the history (finished and embedded runs too)."""


@job.command("list")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_list(config_path: str | None) -> None:
    """Every job the manager knows."""
    _print_jobs(_manager(config_path)[1].status()["jobs"])


def _find_job(client: Client, job_id: str) -> dict[str, Any]:
    for j in client.status()["jobs"]:
        if j["id"] == job_id:
            return dict(j)
    raise HstreamError(f"no such job: {job_id}")


def history_roots(config_path: str | None) -> list[str]:
    """The history directories to read: the configured cluster's, then the embedded runs'."""
    found = config.find_config(config_path)
    roots = [config.load(found).history_dir] if found else []
    return roots + [history.default_root()]


def _live_client(config_path: str | None) -> Client | None:
    """A client of the configured cluster's manager, if one is configured and up."""
    from hstream.cluster import launcher

    found = config.find_config(config_path)
    return launcher.manager_client(config.load(found)) if found else None


def _live_job(client: Client | None, job_id: str) -> dict[str, Any] | None:
    if client is None:
        return None
    return next((dict(j) for j in client.status()["jobs"] if j["id"] == job_id), None)


def _recorded(config_path: str | None, job_id: str) -> tuple[str, JobRecord] | None:
    return history.find_job(history_roots(config_path), job_id)


def _no_such_job(config_path: str | None, job_id: str) -> HstreamError:
    return HstreamError(f"no such job: {job_id} (no running manager knows it, and it is not "
                        f"in the history in {', '.join(history_roots(config_path))})")


@job.command("history")
@click.option("-n", "--limit", default=20, show_default=True, help="How many jobs to show.")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_history(limit: int, config_path: str | None) -> None:
    """Recent jobs, newest first: the cluster's and embedded runs."""
    roots = history_roots(config_path)
    jobs = history.list_summaries(roots)[:max(limit, 0)]
    if not jobs:
        click.echo(f"no jobs in the history ({', '.join(roots)})")
        return
    click.echo(f"{'JOB':<34} {'STATE':<10} {'SUBMITTED':<19} {'DURATION':>9} {'MAPS':>5} "
               f"{'REDUCES':>7} {'FAILED':>6}  NAME")
    for s in jobs:
        spent = (s.finished or time.time()) - s.submitted
        click.echo(f"{s.id:<34} {s.state:<10} {_when(s.submitted):<19} {spent:>8.1f}s "
                   f"{s.maps:>5} {s.reduces:>7} {s.failed:>6}  {s.name}")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


@job.command("status")
@click.argument("job_id")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_status(job_id: str, config_path: str | None) -> None:
    """One job's state and progress (running, finished, or in the history)."""
    j = _live_job(_live_client(config_path), job_id)
    if j is not None:
        _print_live(j)
        return
    found = _recorded(config_path, job_id)
    if found is None:
        raise _no_such_job(config_path, job_id)
    _print_recorded(*found)


def _print_live(j: dict[str, Any]) -> None:
    for key in ("id", "name", "state", "output", "message"):
        click.echo(f"{key}: {j.get(key, '')}")
    click.echo(f"progress: map {int(j['map'] * 100)}% reduce {int(j['reduce'] * 100)}%")
    for a in j.get("running", []):  # with each command's last reporter:status: message
        status = f"  {a['status']}" if a.get("status") else ""
        click.echo(f"  {a['attempt']} on {a['worker']}: {int(a['progress'] * 100)}%{status}")


def _print_recorded(root: str, r: JobRecord) -> None:
    for key, value in (("id", r.id), ("name", r.name), ("state", r.state),
                       ("output", r.output), ("message", r.message)):
        click.echo(f"{key}: {value}")
    done = {(a.kind, a.index) for a in r.attempts.values() if a.outcome == "succeeded"}
    maps = sum(kind == "map" for kind, _ in done)
    click.echo(f"progress: map {_percent(maps, r.maps)}% "
               f"reduce {_percent(len(done) - maps, r.reduces)}%")
    ended = r.finished or time.time()
    click.echo(f"submitted: {_when(r.submitted)}, finished: {_when(r.finished)} "
               f"({ended - r.submitted:.1f} s)")
    outcomes: dict[str, int] = {}
    for a in r.attempts.values():
        outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
    click.echo(f"attempts: {len(r.attempts)} ("
               + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + ")")
    click.echo(f"history: {os.path.join(root, r.id)}")


def _percent(done: int, total: int) -> int:
    return 100 if total == 0 else int(100 * done / total)


@job.command("kill")
@click.argument("job_id")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_kill(job_id: str, config_path: str | None) -> None:
    """Kill a queued or running job."""
    _manager(config_path)[1].request({"op": "kill", "job_id": job_id})
    click.echo(f"Killed job {job_id}")


@job.command("logs")
@click.argument("job_id")
@click.argument("which", required=False)
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_logs(job_id: str, which: str | None, config_path: str | None) -> None:
    """A job's message, its attempts' stderr (failed attempts first) and counters; or one
    task's (task_…) or one attempt's (attempt_…) stderr."""
    found = _recorded(config_path, job_id)
    if found is None:
        _manager_logs(config_path, job_id)
        return
    record = found[1]
    attempts = _chosen(record, which)
    if which is None and record.message:
        click.echo(record.message)
    for a in sorted(attempts, key=lambda a: (not a.failed, a.start, a.id)):
        if which is not None or a.failed or a.stderr:
            _print_attempt(found[0], record, a)
    if which is None:
        click.echo(format_counters(record.counters))


def _manager_logs(config_path: str | None, job_id: str) -> None:
    """A job that is in no history here: the manager's message and counters."""
    client = _live_client(config_path)
    if client is None:
        raise _no_such_job(config_path, job_id)
    reply = client.request({"op": "logs", "job_id": job_id})
    if reply.get("message"):
        click.echo(reply["message"])
    click.echo(format_counters(reply.get("counters") or {}))


def _chosen(record: JobRecord, which: str | None) -> list[AttemptRecord]:
    if which is None:
        return list(record.attempts.values())
    chosen = [a for a in record.attempts.values() if which in (a.id, a.task)]
    if not chosen:
        raise HstreamError(f"job {record.id} has no task or attempt {which}")
    return chosen


def _print_attempt(root: str, record: JobRecord, a: AttemptRecord) -> None:
    status = f", exit status {a.exit_status}" if a.exit_status is not None else ""
    error = f": {a.error}" if a.error else ""
    click.echo(f"==> {a.id} ({a.kind} {a.index}) on {a.worker} ({a.host}): "
               f"{a.outcome}{status}{error} <==")
    text = history.read_stderr(root, record.id, a.id) if a.stderr else None
    click.echo(text.rstrip("\n") if text else "(no stderr)")
