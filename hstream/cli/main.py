"""The `hstream` command: the only module that prints results or chooses exit statuses."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from typing import Any

import click

from hstream import __version__, errors
from hstream.cli.cluster import cluster, job
from hstream.cluster.client import Client, Outcome, format_counters
from hstream.errors import HstreamError
from hstream.hadoop import streaming
from hstream.job import staging_dir

logger = logging.getLogger(__name__)

USAGE = """\
Usage: hstream jar-free [generic options] [streaming options]

Hadoop Streaming's command line; `-x` and `--x` spellings both work.
  -input <path>          input file, directory or glob (repeatable, comma lists)
  -output <dir>          output directory (must not exist)
  -mapper <cmd>          command run on each input split (default: cat)
  -combiner <cmd>        command run on each map's sorted output
  -reducer <cmd>         command run on each partition; NONE for a map-only job
  -numReduceTasks <n>    reduce tasks (0 = map-only)
  -file <file>           ship a file to the tasks' working directory (repeatable)
  -files <a,b#alias>     ship files, optionally renamed
  -archives <x.tgz#dir>  ship archives, unpacked
  -cmdenv <n=v>          environment variable for the tasks (repeatable)
  -partitioner <class>   org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner
  -inputformat <class>   TextInputFormat, KeyValueTextInputFormat or NLineInputFormat
  -outputformat <class>  TextOutputFormat (the only one)
  -lazyOutput            create part files only when something is written
  -D <property=value>    job property (repeatable); hstream.* are hstream's own
  -conf <file.xml>       Hadoop <configuration> file of properties (-D overrides it)
  -cacheFile, -cacheArchive <path#name>   deprecated forms of -files, -archives
  -verbose               print the resolved job configuration
  -background            submit to the running cluster and return the job id
  --workers <n>          local mode: number of workers (default: one per CPU)
  --config <cluster.ini> the cluster to run on (default: $HSTREAM_CONFIG, ./cluster.ini)

With no cluster up, the job runs on an embedded local cluster on 127.0.0.1.
Supported properties and every difference from Hadoop: README, "Hadoop compatibility".
Exit status: 0 success, 1 job failed, 2 input not found, 3 invalid
configuration, 4 output exists, 5 other errors.
"""


def _setup_logging(verbose: int, log_file: str | None = None) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, filename=log_file,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(__version__, prog_name="hstream")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Run Hadoop Streaming jobs without Hadoop."""
    ctx.obj = {"verbose": verbose}


@cli.command("jar-free", context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def jar_free(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run one streaming job and wait (Hadoop Streaming options; -help lists them)."""
    opts = streaming.parse(list(args))
    if opts.help:
        click.echo(USAGE, nl=False)
        return
    spec = opts.spec
    streaming.check_output(spec.output)
    streaming.check_inputs(spec.inputs)
    if opts.verbose:
        _print_conf(spec)
    from hstream.cluster import clusterstate
    running = clusterstate.find_running(opts.config)
    if running is not None:
        remote = Client(*running)
        if opts.background:
            _, job_id = remote.submit(spec)
            click.echo(job_id)
            return
        _report(remote.run(spec), spec.output)
        return
    if opts.background:
        raise errors.ConfigError("-background needs a running cluster (hstream cluster up)")
    from hstream.cluster.localcluster import LocalCluster
    workers = opts.workers or os.cpu_count() or 1
    client: Client | None = None
    try:
        with LocalCluster(workers=workers, verbose=ctx.obj["verbose"] > 0) as cluster:
            client = Client("127.0.0.1", cluster.port, cluster.secret)
            outcome = client.run(spec)
    finally:
        if client is not None and client.job_id is not None:
            # A manager that died mid-job left its staging area: nothing of the job remains.
            shutil.rmtree(staging_dir(spec.output, client.job_id), ignore_errors=True)
    _report(outcome, spec.output)


def _print_conf(spec: Any) -> None:
    click.echo("STREAM: job configuration:", err=True)
    for key, value in sorted(spec.conf.items()):
        click.echo(f"  {key}={value}", err=True)
    for key in ("mapper", "combiner", "reducer", "num_reduces", "output"):
        click.echo(f"  hstream.{key}={getattr(spec, key)}", err=True)
    click.echo(f"  hstream.inputs={','.join(spec.inputs)}", err=True)


def _report(outcome: Outcome, output: str) -> None:
    click.echo(format_counters(outcome.counters), err=True)
    if outcome.state == "succeeded":
        click.echo(f"Job {outcome.job_id} completed successfully in {outcome.seconds:.1f} s",
                   err=True)
        click.echo(f"Output directory: {output}", err=True)
        return
    raise errors.JobFailed(f"Job {outcome.job_id} {outcome.state}: {outcome.message}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=6000, show_default=True, help="TCP port (0: any).")
@click.option("--heartbeat-port", default=6001, show_default=True, help="UDP port (0: any).")
@click.option("--secret-file", required=True, help="Cluster secret (0600 file), or - for stdin.")
@click.option("--heartbeat-interval", default=1.0, show_default=True)
@click.option("--heartbeat-missed", default=10, show_default=True)
@click.option("--exit-with-parent", is_flag=True, hidden=True)
@click.option("--shared-fs/--no-shared-fs", default=True, show_default=True,
              help="Whether workers see input and output paths; if not, data goes through here.")
@click.option("--log-file", default=None)
@click.pass_context
def manager(ctx: click.Context, host: str, port: int, heartbeat_port: int, secret_file: str,
            heartbeat_interval: float, heartbeat_missed: int, exit_with_parent: bool,
            shared_fs: bool, log_file: str | None) -> None:
    """Run the manager daemon in the foreground (prints its ports as JSON when ready)."""
    from hstream import protocol
    from hstream.cluster import manager as manager_mod

    _setup_logging(ctx.obj["verbose"] + 1, log_file)
    secret = (bytes.fromhex(sys.stdin.readline().strip()) if secret_file == "-"
              else protocol.read_secret(secret_file))

    def ready(m: Any) -> None:
        click.echo(json.dumps({"port": m.port, "heartbeat_port": m.heartbeat_port,
                               "pid": os.getpid()}))
        sys.stdout.flush()

    manager_mod.run(host, port, heartbeat_port, secret, heartbeat_interval, heartbeat_missed,
                    exit_with_parent, ready, shared_fs)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args: tuple[str, ...]) -> None:
    """Run a worker daemon in the foreground (see `hstream worker --help`)."""
    from hstream.cluster import worker as worker_mod

    sys.exit(worker_mod.main(list(args)))


cli.add_command(cluster)
cli.add_command(job)


def main() -> None:
    """Entry point: one line and an exit status for every error meant for users."""
    try:
        cli.main(standalone_mode=False, prog_name="hstream")
    except HstreamError as e:
        click.echo(f"hstream: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("hstream: interrupted", err=True)
        sys.exit(errors.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("hstream: interrupted", err=True)
        sys.exit(errors.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(errors.INVALID_CONFIG if isinstance(e, click.UsageError) else e.exit_code)
    except BrokenPipeError:
        sys.exit(errors.OTHER)
