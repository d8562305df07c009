"""One attempt's data path, run as `python -m hstream.task` on a worker host.

Splits and input formats (`splits`, `records`), the map and reduce pipelines (`maptask`,
`reducetask`, sharing `attempt`), sort spills and merges (`sorting`), partitioning
(`partition`), shuffle fetch and serving (`shuffle`), output writing (`output`), the
stderr reporter (`reporter`), the relay client for hosts without a shared filesystem
(`remote`), an attempt's processes and cgroup, killed when it ends, and owner records of
run directories (`procs`), map output compression across the shuffle (`mapcodec`), and
Hadoop's per-attempt knobs: memory limit, ulimit, sort buffer, kept failed directories,
stream.tmpdir (`knobs`), and the zygote that forks warm runners for the worker (`zygote`).

May import: the standard library, `hstream.hadoop`, `hstream.job`, `hstream.errors`,
`hstream.protocol`. Never the cluster. Stdlib only: a host needs only python3.
"""
