"""A deterministic Zipf-distributed text corpus for the word count benchmark.

Words are random lowercase strings, shorter the more frequent (as in English);
word ranks follow Zipf's law with exponent 1; lines hold about ten words. The
same size and seed give the same bytes on every machine that takes the same
path: numpy when it is installed (every token drawn on its own), otherwise a
pure-Python generator that draws a pool of lines token by token and then
samples whole lines from it (fast without numpy; word frequencies are still
Zipf). The two paths make different corpora, so the cache directory names the
path: bench/data/zipf-<MB>mb-s<seed>-f<files>-<np|py>/part-NNNNN.

Usage: python3 bench/corpus.py [--size MB] [--seed N] [--files N]  (prints the directory)
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
VOCABULARY = 200_000
WORDS_PER_LINE = 10
EXPONENT = 1.0
CHUNK_TOKENS = 1 << 21
POOL_LINES = 1 << 18
DONE = ".complete"


def vocabulary(rng: random.Random, size: int = VOCABULARY) -> list[bytes]:
    """Distinct words by rank; frequent words are short (length ~ 2 + 1.1 log10 rank)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    seen: set[str] = set()
    words: list[bytes] = []
    for rank in range(1, size + 1):
        length = max(1, round(2.0 + 1.1 * math.log10(rank) + rng.uniform(-1, 1)))
        while True:
            word = "".join(rng.choices(letters, k=length))
            if word not in seen:
                break
            length += rng.random() < 0.3  # short lengths run out of fresh words
        seen.add(word)
        words.append(word.encode())
    return words


def cumulative(size: int = VOCABULARY) -> list[float]:
    weights = [1.0 / (rank ** EXPONENT) for rank in range(1, size + 1)]
    cum = list(itertools.accumulate(weights))
    return [c / cum[-1] for c in cum]


def chunks_numpy(seed: int, words: list[bytes]) -> Iterator[bytes]:
    """Endless corpus text, token by token, at C speed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cdf = np.array(cumulative(len(words)))
    table = np.array([w + b" " for w in words] + [w + b"\n" for w in words], dtype=object)
    while True:
        idx = np.searchsorted(cdf, rng.random(CHUNK_TOKENS), side="right")
        np.minimum(idx, len(words) - 1, out=idx)
        idx += len(words) * (rng.random(CHUNK_TOKENS) < 1.0 / WORDS_PER_LINE)
        yield b"".join(table[idx].tolist())


def chunks_python(seed: int, words: list[bytes]) -> Iterator[bytes]:
    """Endless corpus text: whole lines sampled from a pool of token-by-token lines."""
    rng = random.Random(seed)
    cum = cumulative(len(words))
    pool: list[bytes] = []
    for _ in range(POOL_LINES):
        n = 1 + min(int(rng.expovariate(1.0 / WORDS_PER_LINE)), 10 * WORDS_PER_LINE)
        pool.append(b" ".join(rng.choices(words, cum_weights=cum, k=n)) + b"\n")
    while True:
        yield b"".join(rng.choices(pool, k=CHUNK_TOKENS // WORDS_PER_LINE))


def have_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def corpus_dir(size_mb: int, seed: int, files: int, method: str) -> str:
    return os.path.join(DATA, f"zipf-{size_mb}mb-s{seed}-f{files}-{method}")


def generate(size_mb: int, seed: int, files: int = 4, method: str | None = None) -> str:
    """The corpus directory, generated unless a complete one is cached."""
    method = method or ("np" if have_numpy() else "py")
    path = corpus_dir(size_mb, seed, files, method)
    # The marker sits beside the directory, not in it: madoop reads every file of its input.
    done = path + DONE
    if os.path.exists(os.path.join(path, "_COMPLETE")):  # caches made before the marker moved
        os.replace(os.path.join(path, "_COMPLETE"), done)
    if os.path.exists(done):
        return path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    words = vocabulary(random.Random(seed))
    source = chunks_numpy(seed, words) if method == "np" else chunks_python(seed, words)
    _write_files(path, source, size_mb << 20, files)
    with open(done, "w") as f:
        f.write(f"size_mb={size_mb} seed={seed} files={files} method={method}\n")
    return path


def _write_files(path: str, source: Iterator[bytes], total: int, files: int) -> None:
    """Cut the endless text into `files` files of about total/files bytes, at line ends."""
    pending = b""
    for i in range(files):
        want = total // files + (total % files if i == files - 1 else 0)
        with open(os.path.join(path, f"part-{i:05d}"), "wb") as out:
            while want > 0:
                if not pending:
                    pending = next(source)
                if len(pending) <= want:
                    out.write(pending)
                    want -= len(pending)
                    pending = b""
                    continue
                cut = pending.rfind(b"\n", 0, want) + 1 or pending.find(b"\n", want) + 1
                out.write(pending[:cut])
                pending = pending[cut:]
                want = 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="megabytes (default 256)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--method", choices=("np", "py"), default=None,
                   help="np (numpy) or py (pure Python); default np when numpy is installed")
    args = p.parse_args(argv)
    start = time.monotonic()
    path = generate(args.size, args.seed, args.files, args.method)
    print(path)
    print(f"{time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
