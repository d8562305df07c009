"""The shuffle: map output stays on the worker that made it; reducers fetch it over TCP.

Layout on a worker: ``WORKDIR/JOB/maps/ATTEMPT/part-RRRRR``, plus ``meta.json`` when
the output is sorted by key field. A small map's output instead goes at the end of its
runner's pack file, ``WORKDIR/JOB/maps/pack-PID`` (`append_pack`): its result says where,
and the worker serves it from there (the `packs` lookup of `serve`).
A fetch is one authenticated request ``{"op": "fetch", "job_id", "attempt_id",
"partition"}`` answered by ``{"op": "data", "size", "keyed"}``, the bytes as
data frames, and ``{"op": "end"}``; or ``{"op": "missing"}``. A reducer on the
map's own host may add ``"in_place": true``: a map output in a file of its own is
then answered by ``{"op": "local", "path", "size", "device", "inode", "keyed"}``
(and a packed one with its ``offset`` in the pack; a routed one with its keys file,
``keys``, ``keys_device``, ``keys_inode``), and the reducer reads it where
it is (no copy through two processes and an HMAC per frame); a file it cannot
open as announced is fetched after all. A reducer that
cannot fetch a map's output reports which map, and the manager re-runs that
map (Hadoop's fetch-failure rule). The server (`serve`, run by the worker)
checks each request against its schema (`hstream.messages.SHUFFLE`) and answers
a malformed one with an error; its accept loop outlasts floods (`protocol.Listener`).

A reducer keeps each map's partition in a file of its own, except a small one (at most
`PACK_SEGMENT`): thousands of small maps would cost an inode each and a merge of thousands
of inputs, so small segments are received whole into memory and written into a *pack*, a
`sort` whose output is one sorted run (Hadoop's in-memory merge of small map outputs).
Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any, NoReturn

from hstream import messages, protocol
from hstream.errors import BadMessage, ProtocolError
from hstream.job import MapOutput, TaskSpec, from_dict
from hstream.task.sorting import SMALL_RUN, SORT, SortFailed, SortOrder, Team, sort_command

logger = logging.getLogger(__name__)

FETCH_THREADS = 4
FETCH_RETRIES = 3
FETCH_TIMEOUT = 30.0
#: A line of finished maps from the worker (a few thousand of them at most).
MAX_ARRIVAL_LINE = 16 << 20
_ID = re.compile(r"^[A-Za-z0-9_]+$")
#: A map's partition up to this size is fetched into memory and packed (see `Packs`).
PACK_SEGMENT = 256 << 10


def map_output_dir(job_dir: str, attempt_id: str) -> str:
    return os.path.join(job_dir, "maps", attempt_id)


def partition_name(r: int) -> str:
    return f"part-{r:05d}"


def keys_name(r: int) -> str:
    """The file of partition `r`'s keys beside it (a line per run of a key), when the map
    knew them."""
    return f"keys-{r:05d}"


def pack_path(job_dir: str, runner: int) -> str:
    return os.path.join(job_dir, "maps", f"pack-{runner}")


def append_pack(job_dir: str, parts: list[bytes]) -> list[int]:
    """Append a small map's partitions to this runner's pack file: [offset, bytes of each].
    A file per map is two inodes (its directory and itself) to allocate and free, and on a
    journal-less ext4 that costs more than a tiny map's whole work. Only plain output (not
    keyed, not compressed) goes here."""
    path = pack_path(job_dir, os.getpid())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as f:
        offset = f.tell()
        for part in parts:
            f.write(part)
    return [offset, *map(len, parts)]


#: Where a map's packed output is, for the worker's shuffle server: (job id, attempt id) ->
#: (the runner's pid, `append_pack`'s list), or None.
PackedLookup = Callable[[str, str], "tuple[int, list[int]] | None"]


def write_meta(outdir: str, keyed: bool, records: list[int] | None = None) -> None:
    """Only a keyed output, or one whose partitions' line counts the map knows, has a
    meta.json: a file is an inode to allocate, and a job of thousands of small maps pays
    for each one. The counts spare the reducer counting lines for its counters."""
    if keyed or records is not None:
        with open(os.path.join(outdir, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"keyed": keyed, "records": records}, f)


def read_meta(outdir: str) -> bool:
    """Whether the map output in `outdir` is keyed (sorted by key field, not whole line)."""
    return bool(_meta(outdir).get("keyed"))


def _meta(outdir: str) -> dict[str, Any]:
    """The map output's meta.json ({} if it has none or it is not an object)."""
    try:
        with open(os.path.join(outdir, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _records(meta: dict[str, Any], part: int) -> dict[str, int]:
    """{"records": N} for a reply, when the map counted partition `part`'s lines."""
    counts = meta.get("records")
    if isinstance(counts, list) and part < len(counts) and _count(counts[part]) is not None:
        return {"records": counts[part]}
    return {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _announced(head: dict[str, Any], size: int) -> int | None:
    """The line count a reply announces, if it is one and fits the size (bytes without a
    line would make the reducer drop its output as if it had no input): else None, count."""
    count = _count(head.get("records"))
    return count if count is not None and (count > 0) == (size > 0) else None


# -- server side (in the worker) -----------------------------------------------------


def serve(sock: socket.socket, auth: bytes | protocol.Auth, workdir: str,
          stopping: threading.Event, jobs: Callable[[str], bool] | None = None,
          packs: PackedLookup | None = None) -> None:
    """Answer fetches on `sock` until `stopping` is set. Reducers come with their job's
    token, taken while `jobs` says the job is active here, and fetch that job's output only."""
    drops = protocol.DropLog(logger, "unauthenticated connection")
    refused = protocol.DropLog(logger, "malformed shuffle request")
    protocol.Listener(sock, auth, lambda chan: _serve_connection(chan, workdir, refused, packs),
                      stopping, drops, [refused], jobs).run()


def _serve_connection(chan: protocol.Channel, workdir: str, refused: protocol.DropLog,
                      packs: PackedLookup | None = None) -> None:
    """A reducer's connection: fetch after fetch; a malformed one is answered with an error."""
    same_host = _same_host(chan)  # the connection's, asked once
    try:
        while True:
            raw = chan.recv()
            try:
                msg = messages.check(raw, messages.SHUFFLE, chan.credential)
                if chan.job_id is not None and msg["job_id"] != chan.job_id:
                    raise BadMessage(f"a token of {chan.job_id} fetches that job's output only")
            except BadMessage as e:
                refused.note(chan.peer.rpartition(":")[0], str(e))
                chan.send({"op": "error", "message": str(e)})
                continue
            serve_fetch(chan, msg, workdir, packs, same_host)
    except EOFError:
        pass
    except (OSError, ProtocolError) as e:
        logger.warning("shuffle connection %s dropped: %s", chan.peer, e)
    finally:
        chan.close()


def serve_fetch(chan: protocol.Channel, msg: dict[str, object], workdir: str,
                packs: PackedLookup | None = None, same_host: bool = False) -> None:
    """Answer one fetch request on an authenticated channel; a reducer on this host
    (`same_host`) that asks for it is told where the output is."""
    job_id, attempt_id, part = msg.get("job_id"), msg.get("attempt_id"), msg.get("partition")
    if not (isinstance(job_id, str) and isinstance(attempt_id, str) and isinstance(part, int)
            and _ID.match(job_id) and _ID.match(attempt_id) and part >= 0):
        raise ProtocolError(f"{chan.peer}: malformed fetch request")
    outdir = map_output_dir(os.path.join(workdir, job_id), attempt_id)
    path = os.path.join(outdir, partition_name(part))
    local = bool(msg.get("in_place")) and same_host
    try:
        meta = _meta(outdir)
        f2 = open(path, "rb")
    except OSError:
        if not _serve_packed(chan, workdir, job_id, attempt_id, part, packs, local):
            chan.send({"op": "missing"})
        return
    keyed, records = bool(meta.get("keyed")), _records(meta, part)
    with f2:
        st = os.fstat(f2.fileno())
        if local:
            chan.send({"op": "local", "path": os.path.abspath(path), "size": st.st_size,
                       "device": st.st_dev, "inode": st.st_ino, "keyed": keyed, **records,
                       **_keys_file(outdir, part)})
            return
        chan.send({"op": "data", "size": st.st_size, "keyed": keyed, **records})
        chan.send_stream(iter(lambda: f2.read(protocol.STREAM_FRAME), b""))


def _keys_file(outdir: str, part: int) -> dict[str, Any]:
    """Where the partition's keys file is, for a `local` reply, when the map wrote one."""
    path = os.path.abspath(os.path.join(outdir, keys_name(part)))
    try:
        st = os.stat(path)
    except OSError:
        return {}
    return {"keys": path, "keys_device": st.st_dev, "keys_inode": st.st_ino}


def _same_host(chan: protocol.Channel) -> bool:
    """Whether the reducer connected from this host's own address: then it can read a map
    output file where it is. Only a guess (a container may share the address but not the
    files): the reducer checks the file it opens against the device and inode sent."""
    try:
        return bool(chan.sock.getpeername()[0] == chan.sock.getsockname()[0])
    except OSError:
        return False


def _serve_packed(chan: protocol.Channel, workdir: str, job_id: str, attempt_id: str, part: int,
                  packs: PackedLookup | None, local: bool = False) -> bool:
    """Serve a packed map output's partition (to a reducer on this host: where it is in the
    pack); False if this worker has none of that map. A pack its task cut short gives a
    short stream, which the reducer refuses."""
    where = packs(job_id, attempt_id) if packs is not None else None
    if where is None or part + 1 >= len(where[1]):
        return False
    runner, packed = where
    path = pack_path(os.path.join(workdir, job_id), runner)
    offset, size = packed[0] + sum(packed[1:part + 1]), packed[part + 1]
    try:
        if local:
            st = os.stat(path)
            chan.send({"op": "local", "path": os.path.abspath(path), "offset": offset,
                       "size": size, "device": st.st_dev, "inode": st.st_ino, "keyed": False})
            return True
        f = open(path, "rb")
    except OSError:
        return False
    with f:
        f.seek(offset)
        chan.send({"op": "data", "size": size, "keyed": False})
        chan.send_stream(_upto(f, size))
    return True


def _upto(f: IO[bytes], size: int) -> Iterator[bytes]:
    while size > 0 and (chunk := f.read(min(size, protocol.STREAM_FRAME))):
        size -= len(chunk)
        yield chunk


# -- client side (in a reduce attempt) ---------------------------------------------


@dataclass
class Fetched:
    paths: list[str] = field(default_factory=list)
    bytes: int = 0
    records: int = 0
    keyed: bool = False
    failed_map: int | None = None
    error: str = ""
    #: Maps fetched ("Shuffled Maps"): a pack in `paths` holds many.
    maps: int = 0
    #: The map each of `paths` came from (a pack, from many, is not here).
    order: dict[str, int] = field(default_factory=dict)
    #: The keys file of each of `paths` that has one (`keys_name`), read in place.
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Segment:
    """One map's partition as fetched: in its own file (`path`), or, when small, whole in
    memory (`data`) until it is written into a pack."""

    size: int
    records: int
    keyed: bool
    path: str | None = None
    data: bytes | None = None
    #: The map's file of this partition's keys, beside `path` (see `Fetched.keys`).
    keys: str | None = None


def fetch_one(src: MapOutput, job_id: str, partition: int, dest: str,
              auth: bytes | protocol.Auth) -> tuple[int, int, bool]:
    """Fetch one map's partition into `dest` on a connection of its own; (bytes, records,
    keyed). Raises OSError/ProtocolError."""
    chan = _connect(src, auth)
    try:
        seg = _fetch_on(chan, src, job_id, partition, dest)
        return seg.size, seg.records, seg.keyed
    finally:
        chan.close()


def _connect(src: MapOutput, auth: bytes | protocol.Auth) -> protocol.Channel:
    chan = protocol.connect(src.host, src.port, auth, timeout=FETCH_TIMEOUT)
    chan.sock.settimeout(FETCH_TIMEOUT)
    return chan


def _fetch_on(chan: protocol.Channel, src: MapOutput, job_id: str, partition: int,
              dest: str, pack_limit: int = -1, in_place: bool = False) -> Segment:
    """Fetch into `dest`, or into memory when the announced size is at most `pack_limit`;
    with `in_place`, a map output file on this host is read where it is (`_read_in_place`)."""
    request = {"op": "fetch", "job_id": job_id, "attempt_id": src.attempt_id,
               "partition": partition}
    chan.send({**request, "in_place": True} if in_place else request)
    head = chan.recv()
    if head["op"] == "local":
        seg = _read_in_place(head, src, pack_limit, dest)
        if seg is not None:
            return seg
        chan.send(request)
        head = chan.recv()
    if head["op"] != "data":
        raise FileNotFoundError(f"map output {src.attempt_id} is gone from {src.host}")
    size, keyed = head["size"], bool(head["keyed"])
    if not isinstance(size, int) or size < 0:
        raise ProtocolError(f"{src.host}: malformed data reply")
    counted = _announced(head, size)
    if size <= pack_limit:
        data = bytearray()
        got, records = _receive(chan, src, size, data.extend, counted is None)
        return Segment(got, records if counted is None else counted, keyed, data=bytes(data))
    with open(dest + ".tmp", "wb") as out:
        got, records = _receive(chan, src, size, out.write, counted is None)
    os.replace(dest + ".tmp", dest)
    return Segment(got, records if counted is None else counted, keyed, path=dest)


def _read_in_place(head: dict[str, Any], src: MapOutput, pack_limit: int,
                   dest: str) -> Segment | None:
    """The map output a `local` reply names, if this process opens that very file (its device
    and inode as announced): a whole file of the announced size is left where it is as a run
    of the merge (its lines counted), or read into memory for a pack when small; a range of
    a pack file (`offset`; at most a small map's output) is read like a fetch's bytes.
    None: fetch it instead."""
    path, size, offset = head.get("path"), head.get("size"), head.get("offset")
    whole = offset is None
    if not (isinstance(path, str) and os.path.isabs(path) and isinstance(size, int)
            and size >= 0 and (whole or isinstance(offset, int) and offset >= 0)):
        raise ProtocolError(f"{src.host}: malformed local reply")
    if not whole and size > SMALL_RUN:  # no map packs that much: not worth a look
        return None
    try:
        f = open(path, "rb")
    except OSError:
        return None
    with f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != (head.get("device"), head.get("inode")) or (
                whole and st.st_size != size):
            return None
        if whole and size > pack_limit:
            records = _announced(head, size)
            if records is None:  # the map did not count them: read them
                records = sum(c.count(b"\n") for c in iter(lambda: f.read(1 << 20), b""))
            return Segment(size, records, bool(head.get("keyed")), path=path,
                           keys=_keys_in_place(head))
        data = os.pread(f.fileno(), size, offset or 0)
    if len(data) != size:  # a pack its task cut short: the fetch says so
        return None
    return _landed(data, bool(head.get("keyed")), pack_limit, dest)


def _keys_in_place(head: dict[str, Any]) -> str | None:
    """The keys file a `local` reply names, if this process finds that very file there."""
    path = head.get("keys")
    if not (isinstance(path, str) and os.path.isabs(path)):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    same = (st.st_dev, st.st_ino) == (head.get("keys_device"), head.get("keys_inode"))
    return path if same else None


def _landed(data: bytes, keyed: bool, pack_limit: int, dest: str) -> Segment:
    """Bytes read in place, where fetched bytes of that size would be: memory or `dest`."""
    records = data.count(b"\n")
    if len(data) <= pack_limit:
        return Segment(len(data), records, keyed, data=data)
    with open(dest + ".tmp", "wb") as out:
        out.write(data)
    os.replace(dest + ".tmp", dest)
    return Segment(len(data), records, keyed, path=dest)


def _receive(chan: protocol.Channel, src: MapOutput, size: int,
             write: Callable[[bytes], object], count: bool = True) -> tuple[int, int]:
    """The announced `size` bytes of a data reply to `write`; (bytes, newlines, if `count`).
    More than announced stops at once: a segment bound for memory must stay as small as it
    said."""
    got = records = 0
    for body in chan.recv_stream():
        got += len(body)
        if got > size:
            raise ProtocolError(f"long fetch from {src.host}: over {size} bytes")
        write(body)
        if count:
            records += body.count(b"\n")
    if got != size:
        raise ProtocolError(f"short fetch from {src.host}: {got} of {size} bytes")
    return got, records


class Connections:
    """Each fetch thread's open channel to each map host, kept between fetches: a reducer of
    thousands of small maps pays a connection and a handshake per host, not per map."""

    def __init__(self, auth: bytes | protocol.Auth, in_place: bool = False) -> None:
        self.auth = auth
        #: Ask for map output files on this host by name (`_fetch_on`).
        self.in_place = in_place
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[protocol.Channel] = []
        self.closed = False

    def fetch(self, src: MapOutput, job_id: str, partition: int, dest: str,
              pack_limit: int = -1) -> Segment:
        """Like `fetch_one` (into memory up to `pack_limit`, see `_fetch_on`); a kept channel
        that fails (its host restarted) is replaced once."""
        cache = self._cache()
        kept = cache.pop((src.host, src.port), None)
        if kept is not None:
            try:
                return self._keep(kept, src, job_id, partition, dest, pack_limit)
            except FileNotFoundError:
                raise
            except (OSError, ProtocolError, EOFError):
                pass  # a fresh connection says whether the host is really unreachable
        return self._keep(self._open(src), src, job_id, partition, dest, pack_limit)

    def _keep(self, chan: protocol.Channel, src: MapOutput, job_id: str, partition: int,
              dest: str, pack_limit: int) -> Segment:
        try:
            result = _fetch_on(chan, src, job_id, partition, dest, pack_limit, self.in_place)
        except BaseException:
            chan.close()
            raise
        self._cache()[(src.host, src.port)] = chan
        return result

    def _open(self, src: MapOutput) -> protocol.Channel:
        chan = _connect(src, self.auth)
        with self.lock:
            if self.closed:  # the fetch ended (a map failed) while this thread connected
                chan.close()
                raise OSError("fetching stopped")
            self.opened.append(chan)
        return chan

    def _cache(self) -> dict[tuple[str, int], protocol.Channel]:
        cache: dict[tuple[str, int], protocol.Channel] | None = getattr(self.local, "chans", None)
        if cache is None:
            cache = self.local.chans = {}
        return cache

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for chan in self.opened:
                chan.close()
            self.opened.clear()


def _fetch_with_retries(src: MapOutput, spec: TaskSpec, dest: str, conns: Connections,
                        pack_limit: int = -1) -> Segment:
    last: Exception | None = None
    for _ in range(FETCH_RETRIES):
        try:
            return conns.fetch(src, spec.job_id, spec.index, dest, pack_limit)
        except FileNotFoundError:
            raise
        except (OSError, ProtocolError, EOFError) as e:
            last = e
            logger.warning("fetch of map %d from %s:%d failed: %s", src.map_index, src.host,
                           src.port, e)
    raise OSError(str(last))


def _fetch_segment(src: MapOutput, spec: TaskSpec, dest: str, conns: Connections,
                   packs: Packs | None) -> Segment:
    """A map's partition; a small one goes into a pack once it is whole. Packing is outside
    the retries: a failed pack sort is this attempt's failure (SortFailed), never the map's."""
    seg = _fetch_with_retries(src, spec, dest, conns, PACK_SEGMENT if packs else -1)
    if packs is not None and seg.data is not None:
        packs.add(seg.data, seg.keyed)
        seg.data = None
    return seg


def fetch_all(spec: TaskSpec, dest_dir: str, auth: protocol.Auth,
              arrivals: IO[bytes] | None = None,
              progress: Callable[[int], object] | None = None,
              pack: PackPlan | None = None, in_place: bool = False) -> Fetched:
    """Fetch this reducer's partition from every map, a few at a time (with the job's token);
    with `in_place`, the map output files of this host are read where they are: the caller
    must only read them.

    A reduce that started before every map was done (slowstart) has fewer `spec.sources` than
    `spec.num_maps`; the worker writes the others on `arrivals` as they finish, a JSON list
    of MapOutput a line, so fetching overlaps the maps. Stops at the first map that cannot be
    fetched: the manager re-runs it. With `pack`, small segments are packed (`Packs`); the
    packs end as sorted runs in `paths`, and no sort of theirs outlives this call."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    if arrivals is not None and len(spec.sources) < spec.num_maps:
        threading.Thread(target=_read_arrivals, args=(arrivals, events), daemon=True,
                         name="arrivals").start()
    result = Fetched()
    conns = Connections(auth, in_place)
    packs = Packs(pack, dest_dir) if pack is not None else None
    try:
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            try:
                _gather(spec, dest_dir, conns, packs, pool, events, result, progress)
            except BaseException:
                _stop(pool, packs)
                raise
            if result.failed_map is not None:
                _stop(pool, packs)
        if packs is not None and result.failed_map is None:
            result.paths += packs.finish()
    finally:
        conns.close()
        if packs is not None:
            packs.kill()
    # The merge's inputs in map order (a stable merge keeps equal keys in that order), then
    # the packs.
    result.paths.sort(key=lambda p: (0, result.order[p]) if p in result.order else (1, p))
    return result


def _stop(pool: ThreadPoolExecutor, packs: Packs | None) -> None:
    """Drop the fetches not yet started; a pack's sorts are killed, and fetches still running
    write nothing more into a pack."""
    pool.shutdown(wait=False, cancel_futures=True)
    if packs is not None:
        packs.kill()


def _gather(spec: TaskSpec, dest_dir: str, conns: Connections, packs: Packs | None,
            pool: ThreadPoolExecutor, events: queue.Queue[tuple[str, Any]], result: Fetched,
            progress: Callable[[int], object] | None) -> None:
    """Submit every map as it is heard of and fold each fetch into `result`, until all are
    fetched or one failed."""
    def submit(sources: list[MapOutput]) -> None:
        for src in sources:
            dest = os.path.join(dest_dir, f"map-{src.map_index:06d}")
            fut = pool.submit(_fetch_segment, src, spec, dest, conns, packs)
            fut.add_done_callback(partial(_fetched, events, src.map_index))

    submit(spec.sources)
    heard, fetched = len(spec.sources), 0
    while fetched < max(heard, spec.num_maps) and result.failed_map is None:
        try:
            kind, item = events.get(timeout=1.0)
        except queue.Empty:
            kind, item = "wait", None
        if kind == "sources":
            submit(item)
            heard += len(item)
        elif kind == "fetched":
            fetched += 1
            _fold(result, *item)
        elif kind == "end" and heard < spec.num_maps:
            raise OSError(f"{item} ({heard} of {spec.num_maps} maps)")
        if progress is not None:
            progress(fetched)


def _fetched(events: queue.Queue[tuple[str, Any]], map_index: int, fut: Future[Segment]) -> None:
    events.put(("fetched", (map_index, fut)))


def _fold(result: Fetched, map_index: int, fut: Future[Segment]) -> None:
    """One fetch's outcome into `result`; a failed pack sort fails the whole fetch."""
    try:
        seg = fut.result()
    except SortFailed:
        raise
    except (OSError, EOFError) as e:
        if result.failed_map is None:
            result.failed_map, result.error = map_index, str(e)
        return
    if seg.path is not None:
        result.paths.append(seg.path)
        result.order[seg.path] = map_index
        if seg.keys is not None:
            result.keys[seg.path] = seg.keys
    result.maps += 1
    result.bytes += seg.size
    result.records += seg.records
    result.keyed = result.keyed or seg.keyed


# -- packs: small segments sorted together -----------------------------------------------


@dataclass(frozen=True)
class PackPlan:
    """What packing needs: the merge's own order (a pack sorted in it is a run the merge
    takes), the sort buffer (a pack is closed at this many bytes, so memory stays bounded)
    and sort's temporary directory. Only for a total order without a codec: see
    `reducetask.pack_plan`."""

    order: SortOrder
    buffer: int
    tmpdir: str


@dataclass
class _Pack:
    """A pack being filled: its sort, whose stdout is the pack file."""

    team: Team
    proc: subprocess.Popen[bytes]
    filled: int = 0


PACKING = "sorting fetched map output"


class Packs:
    """Small segments sorted together into a few runs (`pack-NNNN` files) instead of a file
    and a merge input each. The order is total, so sorting their concatenation equals merging
    them one by one. A pack holds segments of one `keyed` value (the sort options differ), is
    closed when full or at the end, and sorts while the next one fills. Fetch threads write
    whole segments only, one at a time under the lock."""

    def __init__(self, plan: PackPlan, dest_dir: str) -> None:
        self.plan = plan
        self.dest_dir = dest_dir
        self.lock = threading.Lock()
        self.filling: dict[bool, _Pack] = {}
        self.sorting: list[Team] = []
        #: Every pack's team, whatever became of it: `kill` leaves no sort behind.
        self.teams: list[Team] = []
        self.paths: list[str] = []
        self.stopped = False

    def add(self, data: bytes, keyed: bool) -> None:
        """Write a whole segment into the pack of its kind; nothing once stopped."""
        with self.lock:
            if self.stopped or not data:
                return
            pack = self.filling.get(keyed) or self._start(keyed)
            assert pack.proc.stdin is not None
            try:
                pack.proc.stdin.write(data)
            except BrokenPipeError:  # the sort died; its message says why
                self._failed(pack.team)
            pack.filled += len(data)
            if pack.filled >= self.plan.buffer:
                self._close(keyed)

    def _start(self, keyed: bool) -> _Pack:
        path = os.path.join(self.dest_dir, f"pack-{len(self.paths):04d}")
        buffer = self.plan.buffer + (self.plan.buffer >> 2)  # room for sort's own overhead
        argv = sort_command(self.plan.order, keyed, buffer, self.plan.tmpdir)
        team = Team(PACKING, self.plan.tmpdir)
        try:
            out = open(path, "wb")
        except OSError as e:  # a full disk fails the attempt, not the map being fetched
            raise SortFailed(f"{PACKING} failed: {e.strerror}: {path}") from None
        with out:
            proc = team.start(argv, SORT, stdin=subprocess.PIPE, stdout=out)
        self.paths.append(path)
        self.teams.append(team)
        pack = self.filling[keyed] = _Pack(team, proc)
        return pack

    def _close(self, keyed: bool) -> None:
        """End a pack's input: it sorts now; the pack closed before it is waited for."""
        pack = self.filling.pop(keyed)
        assert pack.proc.stdin is not None
        try:
            pack.proc.stdin.close()
        except BrokenPipeError:
            self._failed(pack.team)
        self._settle()
        self.sorting.append(pack.team)

    def _settle(self) -> None:
        """Wait for the closed packs' sorts; SortFailed if one failed."""
        while self.sorting:
            self.sorting.pop(0).finish()

    def _failed(self, team: Team) -> NoReturn:
        team.finish()
        raise SortFailed(f"{PACKING} failed: sort ended early")

    def finish(self) -> list[str]:
        """Close every pack and wait for its sort: the pack files, each a sorted run."""
        with self.lock:
            for keyed in list(self.filling):
                self._close(keyed)
            self._settle()
            return list(self.paths)

    def kill(self) -> None:
        """Stop: every sort a pack started is killed and waited for; later segments are
        dropped (the fetch is failing)."""
        with self.lock:
            self.stopped = True
            for team in self.teams:
                team.kill()
            self.filling.clear()
            self.sorting.clear()


def _read_arrivals(stream: IO[bytes], events: queue.Queue[tuple[str, Any]]) -> None:
    """The worker's lines of newly finished maps, until it closes the stream."""
    for line in iter(lambda: stream.readline(MAX_ARRIVAL_LINE), b""):
        try:
            events.put(("sources", [from_dict(MapOutput, d) for d in json.loads(line)]))
        except (ValueError, TypeError, KeyError) as e:
            events.put(("end", f"bad map output list from the worker: {type(e).__name__}"))
            return
    events.put(("end", "the worker stopped sending finished maps"))
