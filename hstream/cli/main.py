"""The `hstream` command: the only module that prints results or chooses exit statuses."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from typing import Any

import click

from hstream import __version__, errors
from hstream.cli import stdio
from hstream.cli.cluster import cluster, job, ui
from hstream.cluster.client import REATTACH_WINDOW, Client, Outcome, format_counters
from hstream.cluster.history import DEFAULT_MAX_JOBS, DEFAULT_MAX_MB
from hstream.errors import HstreamError
from hstream.hadoop import streaming
from hstream.job import JobSpec, staging_dir
from hstream.runners import options as runner_options

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
  -inputformat <class>   TextInputFormat, KeyValueTextInputFormat, NLineInputFormat or
                         CombineTextInputFormat
  -inputreader <spec>    StreamXmlRecordReader,begin=<tag>,end=</tag>: XML records
  -outputformat <class>  TextOutputFormat (the only one)
  -lazyOutput            create part files only when something is written
  -D <property=value>    job property (repeatable); hstream.* are hstream's own. Hadoop's
                         cluster-only ones (JVM options, queues…) are named in a notice
  -conf <file.xml>       Hadoop <configuration> file of properties (-D overrides it)
  -cacheFile, -cacheArchive <path#name>   deprecated forms of -files, -archives
  -fs, -jt, -libjars, -mapdebug, -reducedebug   accepted; they only mean something to Hadoop
  -verbose               print the resolved job configuration
  -background            submit to the running cluster and return the job id
  --workers <n>          local mode: number of workers (default: one per CPU)
  --config <cluster.ini> the cluster to run on (default: $HSTREAM_CONFIG, ./cluster.ini)
  --runner spark         run on Apache Spark (pip install 'hstream[spark]'); paths may be
                         hdfs://, s3a://, file:// URIs
  --master <url>         with --runner spark: spark://host:7077, yarn, k8s://…, local[N]
  --spark-conf <k=v>     with --runner spark: a Spark property (repeatable)

With no cluster up, the job runs on an embedded local cluster on 127.0.0.1.
Supported properties and every difference from Hadoop: README, "Hadoop compatibility".
Exit status (Hadoop's StreamJob): 0 success, 1 job failed or a command line it cannot
parse, 3 a setting hstream cannot honour, 4 output exists, 5 input not found, other errors.
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
    runner, words = runner_options.extract(list(args))
    ctx.obj["runner"] = runner
    opts = streaming.parse(words)
    if opts.help:
        click.echo(USAGE, nl=False)
        return
    spec = opts.spec
    if runner.runner == "spark":  # hdfs://, s3a:// paths are Spark's to check
        from hstream.runners import spark
        spark.check_paths(spec, opts.background)
    else:
        streaming.require_local(spec)
        streaming.check_output(spec.output)
        streaming.check_inputs(spec.inputs)
        streaming.make_output_parent(spec.output)
    _notice(opts)
    if opts.background and stdio.uses_stdio(spec):
        raise errors.ConfigError("-background cannot read -input - or write -output -")
    shown = "standard output" if spec.output == streaming.STDIO else spec.output
    with stdio.piped(spec) as to_stdout:
        _run(ctx, opts, spec, shown)
        if to_stdout:
            stdio.write_output(spec.output)


def _run(ctx: click.Context, opts: streaming.Options, spec: JobSpec, shown: str) -> None:
    """Run the job on the cluster that is up, else on an embedded one; `shown` names the output."""
    if opts.verbose:
        _print_conf(spec, opts.ignored)
    if ctx.obj["runner"].runner == "spark":
        _run_spark(spec, ctx.obj["runner"], shown)
        return
    from hstream.cluster import clusterstate
    running = clusterstate.find_running(opts.config)
    if running is not None:
        remote = Client(*running)
        remote.reattach_window = REATTACH_WINDOW  # a cluster's manager may restart
        if opts.background:
            _, job_id = remote.submit(spec)
            click.echo(job_id)
            return
        _report(remote.run(spec, **_follow(opts, _cluster_pages(opts.config))), shown)
        return
    if opts.background:
        raise errors.ConfigError("-background needs a running cluster (hstream cluster up)")
    from hstream.cluster.localcluster import LocalCluster
    workers = opts.workers or os.cpu_count() or 1
    client: Client | None = None
    try:
        with LocalCluster(workers=workers, verbose=ctx.obj["verbose"] > 0,
                          outputs=[spec.output]) as cluster:
            client = Client("127.0.0.1", cluster.port, cluster.secret)
            pages = ("127.0.0.1", cluster.web_port, cluster.secret) if cluster.web_port else None
            outcome = client.run(spec, **_follow(opts, pages))
    finally:
        if client is not None and client.job_id is not None:
            # A manager that died mid-job left its staging area: nothing of the job remains.
            shutil.rmtree(staging_dir(spec.output, client.job_id), ignore_errors=True)
    _report(outcome, shown)


def _run_spark(spec: JobSpec, runner: runner_options.RunnerOptions, shown: str) -> None:
    """The same job on Apache Spark (`hstream.runners.spark`), reported as the others are."""
    from hstream.cluster.client import ProgressPrinter
    from hstream.runners import spark

    outcome = spark.run(spec, runner, ProgressPrinter(sys.stderr).update)
    click.echo(f"Spark application: {outcome.app_id}", err=True)
    _report(Outcome(outcome.job_id, "succeeded", "", outcome.counters, outcome.seconds), shown)


def _follow(opts: streaming.Options, pages: tuple[str, int, bytes] | None) -> dict[str, Any]:
    """How the job shows itself: the live bar or Hadoop's lines, and its tracking URL."""
    from hstream.cli import progress
    from hstream.cli.cluster import pages_url

    url = (lambda job_id: pages_url(pages, f"/job/{job_id}")) if pages else None
    return progress.follow(sys.stderr, opts.verbose, url)


def _cluster_pages(config_path: str | None) -> tuple[str, int, bytes] | None:
    from hstream.cli.cluster import cluster_pages
    from hstream.cluster import config

    found = config.find_config(config_path)
    return cluster_pages(config.load(found)) if found else None


#: Names the notice line shows; -verbose lists every one.
NOTICE_NAMES = 6


def _notice(opts: streaming.Options) -> None:
    """One line naming what was accepted without effect (Hadoop-cluster settings)."""
    names = opts.ignored
    if not names or opts.verbose:
        return
    more = len(names) - NOTICE_NAMES
    tail = f", and {more} more (-verbose lists them)" if more > 0 else ""
    click.echo(f"ignored (no effect in hstream): {', '.join(names[:NOTICE_NAMES])}"
               f"{tail}", err=True)


def _print_conf(spec: Any, ignored: list[str]) -> None:
    if ignored:
        click.echo(f"ignored (no effect in hstream): {', '.join(ignored)}", err=True)
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
@click.option("--secret-file", required=True,
              help="- to read the credentials (secret, TLS) from stdin; or a 0600 secret file.")
@click.option("--heartbeat-interval", default=1.0, show_default=True)
@click.option("--heartbeat-missed", default=10, show_default=True)
@click.option("--exit-with-parent", is_flag=True, hidden=True)
@click.option("--shared-fs/--no-shared-fs", default=True, show_default=True,
              help="Whether workers see input and output paths; if not, data goes through here.")
@click.option("--log-file", default=None)
@click.option("--web-port", type=int, default=None,
              help="Serve the status pages on this port of --host (0: any free port).")
@click.option("--history-dir", default=None,
              help="Job history directory (default: $HSTREAM_HOME/history, ~/.hstream/history).")
@click.option("--history-max-jobs", default=DEFAULT_MAX_JOBS, show_default=True,
              envvar="HSTREAM_HISTORY_MAX_JOBS", help="Jobs the history keeps.")
@click.option("--history-max-mb", default=DEFAULT_MAX_MB, show_default=True,
              envvar="HSTREAM_HISTORY_MAX_MB", help="Megabytes the history keeps.")
@click.option("--journal", default=None,
              help="Journal file: jobs survive a restart of the manager (cluster up).")
@click.pass_context
def manager(ctx: click.Context, host: str, port: int, heartbeat_port: int, secret_file: str,
            heartbeat_interval: float, heartbeat_missed: int, exit_with_parent: bool,
            shared_fs: bool, log_file: str | None, web_port: int | None,
            history_dir: str | None, history_max_jobs: int, history_max_mb: int,
            journal: str | None) -> None:
    """Run the manager daemon in the foreground (prints its ports as JSON when ready)."""
    from hstream import protocol
    from hstream.cli.cluster import serve_pages
    from hstream.cluster import manager as manager_mod
    from hstream.cluster.history import HistoryConfig, default_root

    _setup_logging(ctx.obj["verbose"] + 1, log_file)
    protocol.protect_memory()  # before the secret comes in
    auth = (protocol.read_auth(sys.stdin.buffer) if secret_file == "-"
            else protocol.Auth(protocol.read_secret(secret_file)))

    def ready(m: Any) -> None:
        pages = serve_pages(m, host, web_port) if web_port is not None else None
        click.echo(json.dumps({"port": m.port, "heartbeat_port": m.heartbeat_port,
                               "pid": os.getpid(), "web_port": pages}))
        sys.stdout.flush()

    kept = HistoryConfig(history_dir or default_root(), history_max_jobs, history_max_mb << 20)
    manager_mod.run(host, port, heartbeat_port, auth.key, heartbeat_interval, heartbeat_missed,
                    exit_with_parent, ready, shared_fs, kept, auth.tls, journal)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args: tuple[str, ...]) -> None:
    """Run a worker daemon in the foreground (see `hstream worker --help`)."""
    from hstream.cluster import worker as worker_mod

    sys.exit(worker_mod.main(list(args)))


cli.add_command(cluster)
cli.add_command(job)
cli.add_command(ui)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is: the job is killed and everything cleaned up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:  # the clean-up runs once, undisturbed by a second signal
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupted(e: BaseException) -> None:
    """Ctrl-C exits 130; SIGTERM and SIGHUP exit 128 + their number, as a shell reports."""
    cause = e if isinstance(e, Terminated) else e.__cause__
    if isinstance(cause, Terminated):
        click.echo(f"hstream: terminated ({signal.Signals(cause.signum).name})", err=True)
        sys.exit(128 + cause.signum)
    click.echo("hstream: interrupted", err=True)
    sys.exit(errors.INTERRUPTED)


def main() -> None:
    """Entry point: one line and an exit status for every error meant for users."""
    for sig in STOP_SIGNALS:  # the daemons set their own
        signal.signal(sig, _terminate)
    try:
        cli.main(standalone_mode=False, prog_name="hstream")
    except HstreamError as e:
        click.echo(f"hstream: {e}", err=True)
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        _interrupted(e)
    except click.ClickException as e:
        e.show()
        sys.exit(errors.INVALID_CONFIG if isinstance(e, click.UsageError) else e.exit_code)
    except BrokenPipeError:
        sys.exit(errors.OTHER)
