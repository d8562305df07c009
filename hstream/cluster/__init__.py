"""The daemons and their wire: the pure scheduler (`scheduler`, with its placement and
speculation `policy`), the manager that drives it, workers, the client, the relay for hosts
without a shared filesystem, the SSH launcher and its host agent, `cluster.ini` (`config`),
and the embedded local cluster (`localcluster`).

May import: `hstream.hadoop`, `hstream.task`, and the shared modules. Never `hstream.cli`.
The worker-side modules (`worker`, `hostagent`) are stdlib-only.
"""
