"""The shuffle: map output stays on the worker that made it; reducers fetch it over TCP.

Layout on a worker: ``WORKDIR/JOB/maps/ATTEMPT/part-RRRRR``, plus ``meta.json`` when
the output is sorted by key field. A small map's output instead goes at the end of its
runner's pack file, ``WORKDIR/JOB/maps/pack-PID`` (`append_pack`): its result says where,
and the worker serves it from there (the `packs` lookup of `serve`).
A fetch is one authenticated request ``{"op": "fetch", "job_id", "attempt_id",
"partition"}`` answered by ``{"op": "data", "size", "keyed"}``, the bytes as
data frames, and ``{"op": "end"}``; or ``{"op": "missing"}``. A reducer that
cannot fetch a map's output reports which map, and the manager re-runs that
map (Hadoop's fetch-failure rule). The server (`serve`, run by the worker)
checks each request against its schema (`hstream.messages.SHUFFLE`) and answers
a malformed one with an error; its accept loop outlasts floods (`protocol.Listener`).
Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from hstream import messages, protocol
from hstream.errors import BadMessage, ProtocolError
from hstream.job import MapOutput, TaskSpec, from_dict

logger = logging.getLogger(__name__)

FETCH_THREADS = 4
FETCH_RETRIES = 3
FETCH_TIMEOUT = 30.0
#: A line of finished maps from the worker (a few thousand of them at most).
MAX_ARRIVAL_LINE = 16 << 20
_ID = re.compile(r"^[A-Za-z0-9_]+$")


def map_output_dir(job_dir: str, attempt_id: str) -> str:
    return os.path.join(job_dir, "maps", attempt_id)


def partition_name(r: int) -> str:
    return f"part-{r:05d}"


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
Packs = Callable[[str, str], "tuple[int, list[int]] | None"]


def write_meta(outdir: str, keyed: bool) -> None:
    """Only a keyed output has a meta.json: a file is an inode to allocate, and a job of
    thousands of small maps pays for each one."""
    if keyed:
        with open(os.path.join(outdir, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"keyed": keyed}, f)


def read_meta(outdir: str) -> bool:
    """Whether the map output in `outdir` is keyed (sorted by key field, not whole line)."""
    try:
        with open(os.path.join(outdir, "meta.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("keyed"))
    except FileNotFoundError:
        return False


# -- server side (in the worker) -----------------------------------------------------


def serve(sock: socket.socket, auth: bytes | protocol.Auth, workdir: str,
          stopping: threading.Event, jobs: Callable[[str], bool] | None = None,
          packs: Packs | None = None) -> None:
    """Answer fetches on `sock` until `stopping` is set. Reducers come with their job's
    token, taken while `jobs` says the job is active here, and fetch that job's output only."""
    drops = protocol.DropLog(logger, "unauthenticated connection")
    refused = protocol.DropLog(logger, "malformed shuffle request")
    protocol.Listener(sock, auth, lambda chan: _serve_connection(chan, workdir, refused, packs),
                      stopping, drops, [refused], jobs).run()


def _serve_connection(chan: protocol.Channel, workdir: str, refused: protocol.DropLog,
                      packs: Packs | None = None) -> None:
    """A reducer's connection: fetch after fetch; a malformed one is answered with an error."""
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
            serve_fetch(chan, msg, workdir, packs)
    except EOFError:
        pass
    except (OSError, ProtocolError) as e:
        logger.warning("shuffle connection %s dropped: %s", chan.peer, e)
    finally:
        chan.close()


def serve_fetch(chan: protocol.Channel, msg: dict[str, object], workdir: str,
                packs: Packs | None = None) -> None:
    """Answer one fetch request on an authenticated channel."""
    job_id, attempt_id, part = msg.get("job_id"), msg.get("attempt_id"), msg.get("partition")
    if not (isinstance(job_id, str) and isinstance(attempt_id, str) and isinstance(part, int)
            and _ID.match(job_id) and _ID.match(attempt_id) and part >= 0):
        raise ProtocolError(f"{chan.peer}: malformed fetch request")
    outdir = map_output_dir(os.path.join(workdir, job_id), attempt_id)
    path = os.path.join(outdir, partition_name(part))
    try:
        keyed = read_meta(outdir)
        f2 = open(path, "rb")
    except OSError:
        if not _serve_packed(chan, workdir, job_id, attempt_id, part, packs):
            chan.send({"op": "missing"})
        return
    with f2:
        size = os.fstat(f2.fileno()).st_size
        chan.send({"op": "data", "size": size, "keyed": keyed})
        chan.send_stream(iter(lambda: f2.read(protocol.STREAM_FRAME), b""))


def _serve_packed(chan: protocol.Channel, workdir: str, job_id: str, attempt_id: str, part: int,
                  packs: Packs | None) -> bool:
    """Serve a packed map output's partition; False if this worker has none of that map. A
    pack its task cut short gives a short stream, which the reducer refuses."""
    where = packs(job_id, attempt_id) if packs is not None else None
    if where is None or part + 1 >= len(where[1]):
        return False
    runner, packed = where
    try:
        f = open(pack_path(os.path.join(workdir, job_id), runner), "rb")
    except OSError:
        return False
    with f:
        f.seek(packed[0] + sum(packed[1:part + 1]))
        size = packed[part + 1]
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


def fetch_one(src: MapOutput, job_id: str, partition: int, dest: str,
              auth: bytes | protocol.Auth) -> tuple[int, int, bool]:
    """Fetch one map's partition into `dest` on a connection of its own; (bytes, records,
    keyed). Raises OSError/ProtocolError."""
    chan = _connect(src, auth)
    try:
        return _fetch_on(chan, src, job_id, partition, dest)
    finally:
        chan.close()


def _connect(src: MapOutput, auth: bytes | protocol.Auth) -> protocol.Channel:
    chan = protocol.connect(src.host, src.port, auth, timeout=FETCH_TIMEOUT)
    chan.sock.settimeout(FETCH_TIMEOUT)
    return chan


def _fetch_on(chan: protocol.Channel, src: MapOutput, job_id: str, partition: int,
              dest: str) -> tuple[int, int, bool]:
    chan.send({"op": "fetch", "job_id": job_id, "attempt_id": src.attempt_id,
               "partition": partition})
    head = chan.recv()
    if head["op"] != "data":
        raise FileNotFoundError(f"map output {src.attempt_id} is gone from {src.host}")
    got = records = 0
    with open(dest + ".tmp", "wb") as out:
        for body in chan.recv_stream():
            out.write(body)
            got += len(body)
            records += body.count(b"\n")
    if got != head["size"]:
        raise ProtocolError(f"short fetch from {src.host}: {got} of {head['size']} bytes")
    os.replace(dest + ".tmp", dest)
    return got, records, bool(head["keyed"])


class Connections:
    """Each fetch thread's open channel to each map host, kept between fetches: a reducer of
    thousands of small maps pays a connection and a handshake per host, not per map."""

    def __init__(self, auth: bytes | protocol.Auth) -> None:
        self.auth = auth
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[protocol.Channel] = []
        self.closed = False

    def fetch(self, src: MapOutput, job_id: str, partition: int,
              dest: str) -> tuple[int, int, bool]:
        """Like `fetch_one`; a kept channel that fails (its host restarted) is replaced once."""
        cache = self._cache()
        kept = cache.pop((src.host, src.port), None)
        if kept is not None:
            try:
                return self._keep(kept, src, job_id, partition, dest)
            except FileNotFoundError:
                raise
            except (OSError, ProtocolError, EOFError):
                pass  # a fresh connection says whether the host is really unreachable
        return self._keep(self._open(src), src, job_id, partition, dest)

    def _keep(self, chan: protocol.Channel, src: MapOutput, job_id: str, partition: int,
              dest: str) -> tuple[int, int, bool]:
        try:
            result = _fetch_on(chan, src, job_id, partition, dest)
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


def _fetch_with_retries(src: MapOutput, spec: TaskSpec, dest: str,
                        conns: Connections) -> tuple[int, int, bool]:
    last: Exception | None = None
    for _ in range(FETCH_RETRIES):
        try:
            return conns.fetch(src, spec.job_id, spec.index, dest)
        except FileNotFoundError:
            raise
        except (OSError, ProtocolError, EOFError) as e:
            last = e
            logger.warning("fetch of map %d from %s:%d failed: %s", src.map_index, src.host,
                           src.port, e)
    raise OSError(str(last))


def fetch_all(spec: TaskSpec, dest_dir: str, auth: protocol.Auth,
              arrivals: IO[bytes] | None = None,
              progress: Callable[[int], object] | None = None) -> Fetched:
    """Fetch this reducer's partition from every map, a few at a time (with the job's token).

    A reduce that started before every map was done (slowstart) has fewer `spec.sources` than
    `spec.num_maps`; the worker writes the others on `arrivals` as they finish, a JSON list
    of MapOutput a line, so fetching overlaps the maps. Stops at the first map that cannot be
    fetched: the manager re-runs it."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    if arrivals is not None and len(spec.sources) < spec.num_maps:
        threading.Thread(target=_read_arrivals, args=(arrivals, events), daemon=True,
                         name="arrivals").start()
    result = Fetched()
    heard = fetched = 0
    conns = Connections(auth)
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        def submit(sources: list[MapOutput]) -> None:
            for src in sources:
                dest = os.path.join(dest_dir, f"map-{src.map_index:06d}")
                fut = pool.submit(_fetch_with_retries, src, spec, dest, conns)
                fut.add_done_callback(partial(_fetched, events, src.map_index, dest))

        submit(spec.sources)
        heard = len(spec.sources)
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
        pool.shutdown(wait=result.failed_map is None, cancel_futures=True)
    conns.close()
    result.paths.sort()
    return result


def _fetched(events: queue.Queue[tuple[str, Any]], map_index: int, dest: str,
             fut: Future[tuple[int, int, bool]]) -> None:
    events.put(("fetched", (map_index, dest, fut)))


def _fold(result: Fetched, map_index: int, dest: str, fut: Future[tuple[int, int, bool]]) -> None:
    try:
        size, records, keyed = fut.result()
    except (OSError, EOFError) as e:
        if result.failed_map is None:
            result.failed_map, result.error = map_index, str(e)
        return
    result.paths.append(dest)
    result.bytes += size
    result.records += records
    result.keyed = result.keyed or keyed


def _read_arrivals(stream: IO[bytes], events: queue.Queue[tuple[str, Any]]) -> None:
    """The worker's lines of newly finished maps, until it closes the stream."""
    for line in iter(lambda: stream.readline(MAX_ARRIVAL_LINE), b""):
        try:
            events.put(("sources", [from_dict(MapOutput, d) for d in json.loads(line)]))
        except (ValueError, TypeError, KeyError) as e:
            events.put(("end", f"bad map output list from the worker: {type(e).__name__}"))
            return
    events.put(("end", "the worker stopped sending finished maps"))
