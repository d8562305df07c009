"""The Hadoop Streaming surface: what a pasted `hadoop jar …streaming.jar` command means.

The command line to a JobSpec (`streaming`), Hadoop's property names and defaults, key
fields and separators (`keyfields`), `aggregate`, FieldSelectionMapReduce (`fieldsel`),
command splitting and the task environment (`command`), input listing, codec names.

May import: the standard library, `hstream.errors`, `hstream.job`. Never the task runtime
or the cluster. Stdlib only (built-ins run inside tasks on worker hosts).
"""
