"""`hstream cluster up|down|status` and `hstream job list|status|kill|logs`."""

from __future__ import annotations

import time
from typing import Any

import click

from hstream.cluster import config
from hstream.cluster.client import Client, format_counters
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

    cfg = _config(config_path)
    started = time.monotonic()
    results = launcher.Launcher(cfg, click.echo, accept_new_host_keys).up()
    failed = [r for r in results if not r.ok]
    ok = len(results) - len(failed)
    click.echo(f"cluster up: {ok} of {len(results)} hosts ready in "
               f"{time.monotonic() - started:.1f} s")
    if failed:
        raise HstreamError(f"{len(failed)} host(s) failed: "
                           + "; ".join(f"{r.host}: {r.reason}" for r in failed))


@cluster.command()
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def down(config_path: str | None) -> None:
    """Stop every worker and the manager, and clean the worker directories."""
    from hstream.cluster import launcher

    cfg = _config(config_path)
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


@click.group()
def job() -> None:
    """Jobs of the running cluster."""


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


@job.command("status")
@click.argument("job_id")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_status(job_id: str, config_path: str | None) -> None:
    """One job's state and progress."""
    j = _find_job(_manager(config_path)[1], job_id)
    for key in ("id", "name", "state", "output", "message"):
        click.echo(f"{key}: {j.get(key, '')}")
    click.echo(f"progress: map {int(j['map'] * 100)}% reduce {int(j['reduce'] * 100)}%")
    for a in j.get("running", []):  # with each command's last reporter:status: message
        status = f"  {a['status']}" if a.get("status") else ""
        click.echo(f"  {a['attempt']} on {a['worker']}: {int(a['progress'] * 100)}%{status}")


@job.command("kill")
@click.argument("job_id")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_kill(job_id: str, config_path: str | None) -> None:
    """Kill a queued or running job."""
    _manager(config_path)[1].request({"op": "kill", "job_id": job_id})
    click.echo(f"Killed job {job_id}")


@job.command("logs")
@click.argument("job_id")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
def job_logs(job_id: str, config_path: str | None) -> None:
    """A job's final message and counters."""
    reply = _manager(config_path)[1].request({"op": "logs", "job_id": job_id})
    if reply.get("message"):
        click.echo(reply["message"])
    click.echo(format_counters(reply.get("counters") or {}))
