"""The status pages: jobs, one job (task tables, attempt logs, a timeline of attempts, the
input/shuffle/output rates over time), and workers, served read-only over HTTP by the manager
(and by `hstream ui` for the history of embedded runs).

Pages are plain HTML rendered here, charts are SVG drawn here: no JavaScript, no CDN. Every
request needs a token derived from the cluster secret (`auth`); `server` serves, `pages` and
`charts` render, `sources` read the manager's live state or the history on disk.

May import: the standard library, `hstream.cluster` (the history and the manager), and the
shared modules. Only `hstream.cli` imports it.
"""
