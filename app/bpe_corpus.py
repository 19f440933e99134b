"""BPE at corpus scale: pre-token counts and token ids of a text far larger than memory (used by app/data.py).

gpt/bpe.py is the tokenizer; this module feeds it a corpus chunk by chunk. A chunk is a slice of the
text; a pre-token is one string of the tokenizer's pattern split (BPETokenizer.pretokens). Chunks are
cut only where the whole text's pre-tokens end anyway (safe_cut), so that

    counts of the chunks   == gpt.bpe.count_pretokens([text])      (count_pretokens_parallel)
    ids of the chunks      == tok.encode_ordinary(text)            (encode_chunks)

and either can run in worker processes (parallel_map), with the chunks read lazily.
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Iterable

import numpy as np
import regex

from gpt.bpe import GPT2_SPLIT_PATTERN, BPETokenizer, PretokenCounts, count_pretokens


# -- where a text may be cut ------------------------------------------------------------------------

# Where a text may be cut into chunks that pre-tokenize, each on its own, exactly as the whole text does:
# before the last whitespace character of a run that a non-space character follows. A cut at a line
# break is NOT enough: GPT-2's pattern ends a whitespace run one character early when a word follows
# ("= \n \n Senjou" gives " \n \n" then " Senjou"), so a chunk ending in " \n" alone would tokenize
# its end differently (see tests/test_data.py). Here the tail starts afresh with that one character (the
# regex has no look-behind) and the head's last match, which would have stopped before that character
# anyway, sees the end of the string instead of a space: the same match.
def _cut_pattern(special_tokens: Iterable[str] = ()):
    special_tokens = list(special_tokens)
    # A run that ends at a special token ends the text between special tokens that it is in: never cut
    # there, and only where enough text follows to tell.
    avoid = "".join(f"(?!{regex.escape(s)})" for s in special_tokens)
    longest = max(map(len, special_tokens), default=1)
    return regex.compile(r"(?rs)\s(?=\S)" + avoid + f"(?=.{{{longest}}})")


def safe_cut(text: str, special_tokens: Iterable[str] = ()) -> int:
    """The last index i > 0 at which text[:i] and text[i:] pre-tokenize (GPT-2's pattern, special tokens cut
    out as in training) into exactly the pre-tokens of text; 0 if there is none."""
    m = _cut_pattern(special_tokens).search(text, 1)
    return m.start() if m else 0


def chunks_for_pretokenizer(chunks: Iterable[str], chars: int = 1 << 20, special_tokens: Iterable[str] = (),
                            pattern: str = GPT2_SPLIT_PATTERN):
    """Re-cut a stream of chunks (any sizes, cut anywhere, e.g. blocks of lines) into chunks of about `chars`
    characters, each ending at a safe_cut, so that pre-tokenizing the new chunks one by one gives exactly the
    pre-tokens (and hence the token ids) of the whole text. Only GPT-2's pattern is known to be safe to
    cut; for another pattern the text is joined into one chunk."""
    if pattern != GPT2_SPLIT_PATTERN:
        yield "".join(chunks)
        return
    cut = _cut_pattern(special_tokens)
    buf: list[str] = []
    n = 0
    for chunk in chunks:
        if not chunk:
            continue
        buf.append(chunk)
        n += len(chunk)
        if n >= chars:
            text = "".join(buf)
            m = cut.search(text, 1)
            if m:
                yield text[:m.start()]
                text = text[m.start():]
            buf, n = [text], len(text)
    text = "".join(buf)
    if text:
        yield text


# -- counting ---------------------------------------------------------------------------------------

def count_pretokens_parallel(chunks: Iterable[str], pattern: str = GPT2_SPLIT_PATTERN,
                             special_tokens: Iterable[str] = (), processes: int = 1) -> PretokenCounts:
    """gpt.bpe.count_pretokens(chunks, pattern, special_tokens), the chunks counted in `processes` worker
    processes when processes > 1 (read lazily, in batches of a few MB). Cut a text with
    chunks_for_pretokenizer and the counts equal those of the whole text."""
    special_tokens = tuple(special_tokens)
    if processes <= 1 or isinstance(chunks, PretokenCounts):
        return count_pretokens(chunks, pattern, special_tokens)
    counts = PretokenCounts(pattern=pattern, special_tokens=special_tokens)
    count = functools.partial(_count_batch, pattern, special_tokens)
    for part in parallel_map(count, _batches(chunks), processes, ordered=False):
        counts.update(part)
    return counts


def _count_batch(pattern: str, special_tokens: tuple, chunks: list[str]) -> dict:
    return dict(count_pretokens(chunks, pattern, special_tokens))


def _batches(chunks: Iterable[str], chars: int = 1 << 22):
    """Group consecutive chunks into lists of about `chars` characters (one task for a worker each)."""
    batch, n = [], 0
    for chunk in chunks:
        batch.append(chunk)
        n += len(chunk)
        if n >= chars:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


# -- encoding ---------------------------------------------------------------------------------------

def encode_chunks(tok: BPETokenizer, chunks: Iterable[str], processes: int = 1, dtype=None):
    """Token ids of each chunk (tok.encode_ordinary), in order, as NumPy arrays of `dtype` (default
    uint16 when the vocabulary fits, else int32), encoded in `processes` worker processes (each with its
    own pre-token cache) when processes > 1. Cut a text with chunks_for_pretokenizer and the
    concatenated arrays are exactly tok.encode_ordinary(text)."""
    dtype = dtype or (np.uint16 if tok.vocab_size <= 1 << 16 else np.int32)
    if processes <= 1:
        for chunk in chunks:
            yield _encode_array(tok, chunk, dtype)
        return
    yield from parallel_map(_encode_in_worker, chunks, processes, init=_init_encoder,
                            init_args=(tok.to_dict(), np.dtype(dtype).str))


def _encode_array(tok: BPETokenizer, chunk: str, dtype):
    """tok.encode_ordinary(chunk) as an array, without a Python step per token: the pre-tokens' ids come
    from the tokenizer's cache (tok.pretoken_ids; WikiText's Zipfian vocabulary makes nearly every
    pre-token a hit) and numpy reads them straight off the iterator."""
    return np.fromiter(chain.from_iterable(tok.pretoken_ids(tok.pretokens(chunk))), dtype=dtype)


_worker_state: dict = {}


def _init_encoder(tok_dict, dtype):
    _worker_state["tok"] = BPETokenizer.from_dict(tok_dict)
    _worker_state["dtype"] = dtype


def _encode_in_worker(chunk: str):
    return _encode_array(_worker_state["tok"], chunk, _worker_state["dtype"])


# -- worker processes -------------------------------------------------------------------------------

def parallel_map(fn, items: Iterable, processes: int, ordered: bool = True, init=None, init_args=(),
                 in_flight: int | None = None):
    """fn over items in `processes` worker processes, results in order (or as they come), reading `items`
    lazily: at most `in_flight` items (default 2 per process) are handed out and not yet consumed, so a
    stream of chunks never piles up in memory. A worker's exception is raised here."""
    import multiprocessing as mp
    import threading
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    in_flight = in_flight or 2 * processes
    slots = threading.Semaphore(in_flight)
    stop = threading.Event()

    def throttled():        # runs in the pool's task-feeding thread
        for item in items:
            slots.acquire()
            if stop.is_set():
                return
            yield item

    pool = ctx.Pool(processes, initializer=init, initargs=init_args)
    try:
        run = pool.imap if ordered else pool.imap_unordered
        for result in run(fn, throttled()):
            slots.release()
            yield result
        pool.close()
    finally:
        # On an error (or an abandoned generator) the feeding thread may wait on `slots`: wake it so
        # that terminate() can join it, then stop the workers.
        stop.set()
        for _ in range(in_flight + 1):
            slots.release()
        pool.terminate()
        pool.join()
