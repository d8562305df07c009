#!/usr/bin/env python3
"""Stands in for org.apache.hadoop.streaming.TrApp and TrAppReduce (Hadoop's streaming tests).

`tr_app.py FIND REPLACE` copies stdin to stdout with every FIND character replaced by REPLACE
(`\\n` means a newline), like /usr/bin/tr. As TrApp (the mapper), it writes
`reporter:counter:UserCounters,InputLines,1` to stderr for each input line; with `--reduce` it
is TrAppReduce, which writes no counter.

Both Java classes first check that the job configuration reached the task environment
(testParentJobConfToEnvVars) and fail if it did not. This port runs the same checks only
when the environment variable TRAPP_CHECK_ENV names its role (the tests set it with -cmdenv),
so the check is tested on its own: TRAPP_CHECK_ENV=map checks in the mapper (TrApp), =reduce
in the reducer (TrAppReduce). The variables and values are TrApp's and TrAppReduce's.
"""
import os
import sys


def check_env(reduce: bool) -> None:
    env = os.environ
    problems = []

    def expect(name: str, value: str | None) -> None:
        if value is None or env.get(name) != value:
            problems.append(f"FAIL evName={name} got={env.get(name)} expect={value}")

    def expect_defined(name: str) -> None:
        if name not in env:
            problems.append(f"FAIL evName={name} is undefined. Expect defined.")

    if reduce:  # TrAppReduce.testParentJobConfToEnvVars
        expect("mapreduce_jobtracker_address", "local")
        expect_defined("mapreduce_cluster_local_dir")
        expect("mapred_output_format_class", "org.apache.hadoop.mapred.TextOutputFormat")
        expect("mapreduce_job_output_key_class", "org.apache.hadoop.io.Text")
        expect("mapreduce_job_output_value_class", "org.apache.hadoop.io.Text")
        expect("mapreduce_task_ismap", "false")
        expect_defined("mapreduce_task_attempt_id")
        expect_defined("mapreduce_task_io_sort_factor")
    else:  # TrApp.testParentJobConfToEnvVars
        expect_defined("mapreduce_cluster_local_dir")
        expect("mapreduce_map_output_key_class", "org.apache.hadoop.io.Text")
        expect("mapreduce_map_output_value_class", "org.apache.hadoop.io.Text")
        expect("mapreduce_task_ismap", "true")
        expect_defined("mapreduce_task_attempt_id")
        expect_defined("mapreduce_map_input_file")
        expect_defined("mapreduce_map_input_length")
        expect_defined("mapreduce_task_io_sort_factor")
        expect("map_input_file", env.get("mapreduce_map_input_file"))
        expect("map_input_length", env.get("mapreduce_map_input_length"))
    if problems:
        sys.stderr.write("".join(p + "\n" for p in problems))
        sys.exit(1)


def unescape(arg: str) -> bytes:
    return b"\n" if arg == "\\n" else arg.encode()


def main() -> None:
    args = sys.argv[1:]
    reduce = args[:1] == ["--reduce"]
    if reduce:
        args = args[1:]
    if ("reduce" if reduce else "map") in os.environ.get("TRAPP_CHECK_ENV", "").split(","):
        check_env(reduce)
    find, replace = unescape(args[0])[:1], unescape(args[1])[:1]
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\n").rstrip(b"\r")  # Java's readLine
        sys.stdout.buffer.write(line.replace(find, replace) + b"\n")
        if not reduce:
            sys.stderr.write("reporter:counter:UserCounters,InputLines,1\n")
            sys.stderr.flush()


main()
