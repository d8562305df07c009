"""Other engines that run the same streaming job: `hstream jar-free --runner spark`.

`options` pulls the runner's own words (`--runner`, `--master`, `--spark-conf`) out of the
command line; `spark` is the driver side of the Spark runner and `sparktask` what runs inside
Spark's executors: hstream's own map and reduce pipelines (`hstream.task`), with Spark's
shuffle between them in place of hstream's. `standalone` starts a Spark standalone cluster on
127.0.0.1 from pyspark's jars (for the tests and the benchmark).

May import: `hstream.hadoop`, `hstream.task`, the shared modules, psutil, and pyspark (only
inside functions, so that hstream works without it). Never `hstream.cluster` or `hstream.cli`.
"""
