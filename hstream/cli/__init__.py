"""The command line: the only place that prints to the user and chooses exit codes.

`main` is the `hstream` click group (`main.py`: `jar-free`, the daemons); `cluster.py` adds
`cluster …` and `job …`; `stdio.py` makes `-input -` and `-output -` files for the job.
Errors meant for users arrive as `HstreamError` and are caught once, here.

May import every other room; nothing imports it.
"""

from hstream.cli.main import main

__all__ = ["main"]
