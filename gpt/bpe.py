"""Byte-level byte-pair encoding (BPE), the tokenizer family of GPT-2.

How it works, in three steps:

1. Pre-tokenization. A regular expression (GPT-2's, below) cuts text into
   "pre-tokens": words with their leading space, numbers, runs of punctuation,
   whitespace. Merges never cross a pre-token boundary, so " dog" and " dog."
   share the token for " dog".
2. Bytes. Each pre-token is UTF-8 encoded; each byte is a token to start with,
   so any string at all can be encoded and nothing is ever "unknown".
3. Merges. Training repeatedly finds the most frequent adjacent pair of tokens
   in the corpus and makes it a new token. Encoding replays those merges in the
   order they were learned (lowest id first).

Token ids: 0..255 are the single bytes, 256.. are merges in the order learned,
and special tokens such as ``<|endoftext|>`` come last. A tokenizer loaded from
GPT-2's files keeps GPT-2's own ids instead (its bytes are permuted), which is
why the tables below map bytes to ids rather than assuming id == byte.
"""

from __future__ import annotations

import heapq
import json
import operator
import os
from collections import Counter, defaultdict
from typing import Iterable

import regex
import torch

from gpt.utils import atomic_write_bytes

# GPT-2's pre-tokenization pattern (the same one tiktoken's "gpt2" encoding uses):
# contractions, optional space + letters, optional space + digits, optional space +
# other symbols, whitespace not followed by a non-space (so " word" keeps its
# space), and any remaining whitespace.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

EOT = "<|endoftext|>"
FORMAT = "hw5-bpe"
FORMAT_VERSION = 1
_CACHE_LIMIT = 1 << 20  # distinct pre-tokens remembered by encode()


# ----------------------------------------------------------------------------
# The two primitives that training and encoding are built from.


def count_pairs(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict:
    """Add `weight` to counts[(a, b)] for every adjacent pair (a, b) in `ids`.

    Example: count_pairs([1, 2, 3, 1, 2]) -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}.
    A pre-token that occurs f times in the corpus is counted once with weight=f;
    a negative weight takes a word's pairs back out.
    """
    counts = {} if counts is None else counts
    # TODO(bpe-count-pairs): for each adjacent pair (ids[i], ids[i+1]), add
    # `weight` to counts[pair] (a missing pair starts at 0). Return `counts`.
    # Hint: zip(ids, ids[1:]) walks the adjacent pairs.
    ### BEGIN SOLUTION
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    ### END SOLUTION
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Return a copy of `ids` with every occurrence of `pair` replaced by `new_id`.

    Occurrences are taken left to right and never overlap:
    merge([5, 5, 5], (5, 5), 9) -> [9, 5];  merge([1, 2, 3, 1, 2], (1, 2), 7) -> [7, 3, 7].
    """
    # TODO(bpe-merge): scan left to right; where ids[i], ids[i+1] equals `pair`,
    # emit new_id and skip both, otherwise emit ids[i] and move on by one.
    ### BEGIN SOLUTION
    a, b = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    ### END SOLUTION
    return out


# ----------------------------------------------------------------------------
# GPT-2's file format stores tokens as printable strings: each byte is mapped to
# a visible unicode character (spaces become "Ġ", newlines "Ċ", ...).


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = visible[:]
    n = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(visible, map(chr, chars)))


class PretokenCounts(Counter):
    """Pre-token -> frequency, as count_pretokens returns it, remembering the pattern and special tokens it
    was counted with. BPETokenizer.train accepts it in place of text (so the counting can be done
    elsewhere: streamed, in worker processes) and refuses one counted with another pattern."""

    def __init__(self, counts=(), pattern: str = GPT2_SPLIT_PATTERN, special_tokens: Iterable[str] = ()):
        super().__init__(counts)
        self.pattern, self.special_tokens = pattern, tuple(sorted(set(special_tokens)))


def count_pretokens(texts: Iterable[str], pattern: str = GPT2_SPLIT_PATTERN,
                    special_tokens: Iterable[str] = (), processes: int = 1) -> PretokenCounts:
    """Count how often each pre-token occurs. Special tokens are cut out first and never counted.

    `texts` is consumed lazily, one string at a time, and each string is pre-tokenized on its own, so a
    corpus can be streamed in chunks: cut it where `safe_cut` says (chunks_for_pretokenizer does) and the
    counts equal those of the whole text. processes > 1 counts the chunks in that many worker processes.
    Given a PretokenCounts (counted earlier with the same pattern and special tokens), returns it as is.
    """
    special_tokens = list(special_tokens)
    if isinstance(texts, PretokenCounts):
        if texts.pattern != pattern or texts.special_tokens != tuple(sorted(set(special_tokens))):
            raise ValueError("these pre-token counts were made with another pattern or other special tokens")
        return texts
    counts = PretokenCounts(pattern=pattern, special_tokens=special_tokens)
    if processes > 1:
        for part in parallel_map(_count_batch, _batches(texts), processes, ordered=False,
                                 init=_init_counter, init_args=(pattern, tuple(special_tokens))):
            counts.update(part)
        return counts
    count = _Counter(pattern, special_tokens)
    for text in texts:
        count(text, counts)
    return counts


class _Counter:
    def __init__(self, pattern, special_tokens):
        specials = sorted(special_tokens, key=len, reverse=True)
        self.findall = regex.compile(pattern).findall
        self.split = regex.compile("|".join(regex.escape(s) for s in specials)).split if specials else None

    def __call__(self, text: str, counts: Counter) -> None:
        for piece in (self.split(text) if self.split else (text,)):
            counts.update(self.findall(piece))


_worker_state: dict = {}


def _init_counter(pattern, special_tokens):
    _worker_state["count"] = _Counter(pattern, special_tokens)


def _count_batch(texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        _worker_state["count"](text, counts)
    return counts


def _batches(texts: Iterable[str], chars: int = 1 << 22):
    """Group consecutive strings into lists of about `chars` characters (one task for a worker each)."""
    batch, n = [], 0
    for text in texts:
        batch.append(text)
        n += len(text)
        if n >= chars:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


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


# Where a text may be cut into chunks that pre-tokenize, each on its own, exactly as the whole text does:
# before the last whitespace character of a run that a non-space character follows. A cut at a line
# break is NOT enough: GPT-2's pattern ends a whitespace run one character early when a word follows
# ("= \n \n Senjou" gives " \n \n" then " Senjou"), so a chunk ending in " \n" alone would tokenize
# its end differently (see tests/test_data.py). Here the tail starts afresh with that one character (the
# regex has no look-behind) and the head's last match, which would have stopped before that character
# anyway, sees the end of the string instead of a space: the same match.
def _cut_pattern(special_tokens: Iterable[str] = ()):
    special_tokens = list(special_tokens)
    # A run that ends at a special token ends the text piece it is in: never cut there, and only where
    # enough text follows to tell.
    avoid = "".join(f"(?!{regex.escape(s)})" for s in special_tokens)
    longest = max(map(len, special_tokens), default=1)
    return regex.compile(r"(?rs)\s(?=\S)" + avoid + f"(?=.{{{longest}}})")


def safe_cut(text: str, special_tokens: Iterable[str] = ()) -> int:
    """The last index i > 0 at which text[:i] and text[i:] pre-tokenize (GPT-2's pattern, special tokens cut
    out as in training) into exactly the pre-tokens of text; 0 if there is none."""
    m = _cut_pattern(special_tokens).search(text, 1)
    return m.start() if m else 0


def chunks_for_pretokenizer(pieces: Iterable[str], chars: int = 1 << 20, special_tokens: Iterable[str] = (),
                            pattern: str = GPT2_SPLIT_PATTERN):
    """Re-cut a stream of text pieces (any sizes, e.g. blocks of lines) into chunks of about `chars`
    characters, each ending at a safe_cut, so that pre-tokenizing the chunks one by one gives exactly the
    pre-tokens (and hence the token ids) of the whole text. Only GPT-2's pattern is known to be safe to
    cut; for another pattern the text is joined into one chunk."""
    if pattern != GPT2_SPLIT_PATTERN:
        yield "".join(pieces)
        return
    cut = _cut_pattern(special_tokens)
    buf: list[str] = []
    n = 0
    for piece in pieces:
        if not piece:
            continue
        buf.append(piece)
        n += len(piece)
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


def encode_chunks(tok: "BPETokenizer", chunks: Iterable[str], processes: int = 1, dtype=None):
    """Token ids of each chunk (tok.encode_ordinary), in order, as NumPy arrays of `dtype` (default
    uint16 when the vocabulary fits, else int32), encoded in `processes` worker processes (each with its
    own pre-token cache) when processes > 1. Cut a text with chunks_for_pretokenizer and the
    concatenated arrays are exactly tok.encode_ordinary(text)."""
    import numpy as np
    dtype = dtype or (np.uint16 if tok.vocab_size <= 1 << 16 else np.int32)
    if processes <= 1:
        for chunk in chunks:
            yield _encode_array(tok, chunk, dtype)
        return
    yield from parallel_map(_encode_in_worker, chunks, processes, init=_init_encoder,
                            init_args=(tok.to_dict(), np.dtype(dtype).str))


def _encode_array(tok, chunk: str, dtype):
    """tok.encode_ordinary(chunk) as an array, without a Python step per token: the pre-tokens' ids come
    from the tokenizer's cache (WikiText's Zipfian vocabulary makes nearly every lookup a hit) and
    numpy reads them straight off the iterator."""
    import numpy as np
    from itertools import chain
    cache = tok._cache
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    return np.fromiter(chain.from_iterable(map(cache.__getitem__, tok._pat.findall(chunk))), dtype=dtype)


class _PretokenCache(dict):
    """pre-token -> its ids, encoding (and remembering) a pre-token on its first lookup."""

    def __init__(self, encode_word):
        super().__init__()
        self._encode_word = encode_word

    def __missing__(self, piece: str) -> list[int]:
        ids = self[piece] = self._encode_word(piece)
        return ids


def _init_encoder(tok_dict, dtype):
    _worker_state["tok"] = BPETokenizer.from_dict(tok_dict)
    _worker_state["dtype"] = dtype


def _encode_in_worker(chunk: str):
    return _encode_array(_worker_state["tok"], chunk, _worker_state["dtype"])


def _token_id(i) -> int:
    """An id as a Python int: ints, NumPy integers and integer 0-d tensors pass; floats and bools are
    a TypeError (int(2.7) would silently decode token 2)."""
    if isinstance(i, bool) or getattr(i, "dtype", None) == torch.bool:
        raise TypeError(f"token ids are integers, got the bool {i!r}")
    try:
        return operator.index(i)
    except TypeError:
        raise TypeError(f"token ids are integers, got {type(i).__name__} {i!r}") from None


def _to_utf8(piece: str) -> bytes:
    """UTF-8 bytes of a pre-token; a lone surrogate (not valid Unicode text) becomes U+FFFD, as in tiktoken."""
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError:
        return piece.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _merge_in_words(words: list[list[int]], freqs: list[int], where: dict, pair: tuple[int, int],
                    new_id: int) -> dict[tuple[int, int], int]:
    """Merge `pair` into new_id in every word that holds it (where[pair] lists them), keeping `where`
    up to date; returns how each pair's count changes (weighted by the words' frequencies)."""
    delta: dict[tuple[int, int], int] = {}
    for i in where.pop(pair):
        old = words[i]
        new = merge(old, pair, new_id)
        if len(new) == len(old):
            continue  # the index is stale: an earlier merge already removed the pair here
        count_pairs(old, delta, -freqs[i])
        count_pairs(new, delta, freqs[i])
        words[i] = new
        for p in zip(new, new[1:]):
            where[p].add(i)
    return delta


class BPETokenizer:
    """A byte-level BPE tokenizer: train it, or load GPT-2's; encode, decode, save, load.

    State (everything else is derived from it):
      byte_ids        list of 256 ids: byte_ids[b] is the token of the single byte b
      merges          {(id_a, id_b): new_id}; a lower new_id means the merge was learned earlier
      special_tokens  {"<|endoftext|>": id, ...}
      pattern         the pre-tokenization regex
    """

    def __init__(self, merges: dict[tuple[int, int], int], special_tokens: dict[str, int] | None = None,
                 pattern: str = GPT2_SPLIT_PATTERN, byte_ids: list[int] | None = None):
        self.byte_ids = list(range(256)) if byte_ids is None else list(byte_ids)
        self.merges = dict(merges)
        self.special_tokens = dict(special_tokens or {})
        self.pattern = pattern
        if sorted(self.byte_ids) != list(range(256)):
            raise ValueError("byte_ids must be a permutation of 0..255 (one id per byte value)")
        # vocab: id -> bytes. Walk the merges in id order so both parts already exist.
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        for (a, b), new_id in sorted(self.merges.items(), key=lambda kv: kv[1]):
            if a not in self.vocab or b not in self.vocab or a >= new_id or b >= new_id:
                raise ValueError(f"merge ({a}, {b}) -> {new_id} uses a token that is not defined before it")
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        for s, i in self.special_tokens.items():
            if i in self.vocab:
                raise ValueError(f"special token {s!r} reuses id {i}")
        self._id_to_special = {i: s.encode("utf-8") for s, i in self.special_tokens.items()}
        self._pat = regex.compile(pattern)
        self._special_pat = (regex.compile("(" + "|".join(regex.escape(s) for s in
                             sorted(self.special_tokens, key=len, reverse=True)) + ")")
                             if self.special_tokens else None)
        self._cache: dict[str, list[int]] = _PretokenCache(self._encode_chunk)

    # -- sizes -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One more than the largest id, so an embedding table of this size covers every token."""
        return 1 + max(max(self.vocab), max(self._id_to_special, default=-1))

    @property
    def eot_id(self) -> int | None:
        """Id of <|endoftext|>, or None when the tokenizer has no such special token."""
        return self.special_tokens.get(EOT)

    # -- training --------------------------------------------------------------
    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int, special_tokens: Iterable[str] = (EOT,),
              pattern: str = GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        """Learn merges from `text` (a string or an iterable of strings) until the vocabulary
        (256 bytes + merges + special tokens) has `vocab_size` entries.

        Each step merges the most frequent adjacent pair; ties go to the pair whose bytes
        come first ((bytes of a, bytes of b) compared in byte order), so training is
        deterministic. Counting is incremental: every distinct pre-token is stored once with
        its frequency, pair counts are kept up to date, and a merge only revisits the words
        that contain the merged pair. If the corpus runs out of pairs first, the vocabulary
        is smaller than asked.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least "
                             f"256 + {len(special_tokens)} special tokens")
        texts = [text] if isinstance(text, str) else text
        word_counts = count_pretokens(texts, pattern, special_tokens)

        words = [list(_to_utf8(w)) for w in word_counts]          # each distinct pre-token, as ids
        freqs = list(word_counts.values())                        # how often it occurs
        vocab = {i: bytes([i]) for i in range(256)}                # id -> its bytes (ties compare these)
        merges: dict[tuple[int, int], int] = {}                    # (a, b) -> new id, in the order learned
        # TODO(bpe-train): learn up to n_merges merges into `merges` (and `vocab`). Each step:
        # - find the most frequent adjacent pair over all words, each word counted with its frequency
        #   (count_pairs(word, counts, weight=freq)); stop early when no pair is left;
        # - ties: the pair whose bytes come first, i.e. the smallest (vocab[a], vocab[b]). Compare the
        #   BYTES, not the ids: the merged token 256 = b"ab" comes before the byte 99 = b"c";
        # - record it: new_id = 256 + len(merges); merges[(a, b)] = new_id; vocab[new_id] = vocab[a] + vocab[b];
        # - replace the pair in every word with merge() (so "aaaa" -> [256, 256], whose pair (256, 256)
        #   is counted once next time).
        # The simple way (recount all pairs with count_pairs every step, then merge every word) is correct and
        # fine on small corpora. The real run trains on millions of characters: the solution is
        # incremental (the hint): count once; keep `where` (pair -> indices of the words holding it) and
        # let _merge_in_words(words, freqs, where, pair, new_id) merge only those words and return how each
        # pair's count changed; keep the counts in a heap (heapq, counts negated) and skip popped entries
        # whose count is out of date.
        ### BEGIN SOLUTION
        pair_counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words holding it
        for i, (w, f) in enumerate(zip(words, freqs)):
            count_pairs(w, pair_counts, f)
            for pair in zip(w, w[1:]):
                where[pair].add(i)

        # Max-heap by count (negated for heapq), then smallest bytes. Entries go stale when counts
        # change; a popped entry is used only if its count is still current.
        heap = [(-c, vocab[a], vocab[b], a, b) for (a, b), c in pair_counts.items()]
        heapq.heapify(heap)
        while len(merges) < n_merges and heap:
            neg_count, _, _, a, b = heapq.heappop(heap)
            if pair_counts.get((a, b)) != -neg_count:
                continue  # stale entry
            new_id = 256 + len(merges)
            merges[(a, b)] = new_id
            vocab[new_id] = vocab[a] + vocab[b]
            delta = _merge_in_words(words, freqs, where, (a, b), new_id)
            for pair, d in delta.items():
                if d:
                    c = pair_counts.get(pair, 0) + d
                    if c > 0:
                        pair_counts[pair] = c
                        heapq.heappush(heap, (-c, vocab[pair[0]], vocab[pair[1]], pair[0], pair[1]))
                    else:
                        pair_counts.pop(pair, None)
        ### END SOLUTION
        first_special = 256 + len(merges)
        specials = {s: first_special + k for k, s in enumerate(special_tokens)}
        return cls(merges, specials, pattern)

    # -- GPT-2's files -----------------------------------------------------------
    @classmethod
    def from_gpt2(cls, encoder_json_path: str | os.PathLike, vocab_bpe_path: str | os.PathLike) -> "BPETokenizer":
        """Load GPT-2's `encoder.json` (token string -> id) and `vocab.bpe` (merges, in rank order).

        GPT-2 gives every merge the id 256 + its rank, so "apply the lowest id first" is exactly
        GPT-2's rule; the loader checks this rather than assuming it.
        """
        with open(encoder_json_path, encoding="utf-8") as f:
            encoder: dict[str, int] = json.load(f)
        with open(vocab_bpe_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        byte_to_char = bytes_to_unicode()
        try:
            byte_ids = [encoder[byte_to_char[b]] for b in range(256)]
            merges = {}
            for line in lines:
                if not line.strip():
                    continue
                left, right = line.split()
                merges[(encoder[left], encoder[right])] = encoder[left + right]
        except (KeyError, ValueError) as e:
            raise ValueError(f"{vocab_bpe_path} does not match {encoder_json_path} ({e!r}); "
                             "pass GPT-2's encoder.json and vocab.bpe from the same release") from None
        ids_in_rank_order = list(merges.values())
        if ids_in_rank_order != sorted(ids_in_rank_order):
            raise ValueError(f"{vocab_bpe_path}: merge ids are not in rank order; not a GPT-2 style vocabulary")
        specials = {s: i for s, i in encoder.items() if s.startswith("<|") and s.endswith("|>")}
        return cls(merges, specials, GPT2_SPLIT_PATTERN, byte_ids)

    # -- encoding ----------------------------------------------------------------
    def _encode_chunk(self, piece: str) -> list[int]:
        """Encode one pre-token: start from its bytes, then apply merges lowest id first."""
        ids = [self.byte_ids[b] for b in _to_utf8(piece)]
        merges = self.merges
        # TODO(bpe-encode-word): while at least two tokens remain, find the adjacent pair
        # with the LOWEST merge id in self.merges (pairs that are not merges never qualify);
        # stop if there is none, else replace all its occurrences with merge(). Applying
        # merges in the order they were learned is what makes encoding match training.
        ### BEGIN SOLUTION
        while len(ids) >= 2:
            best = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            new_id = merges.get(best)
            if new_id is None:
                break
            ids = merge(ids, best, new_id)
        ### END SOLUTION
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating special-token strings as plain text."""
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        out: list[int] = []
        for piece in self._pat.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = cache[piece] = self._encode_chunk(piece)
            out += ids
        return out

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Text -> token ids.

        allowed_special: "none" (special-token strings are encoded as ordinary text), "all",
        or a set of special-token strings that become their single special id.
        """
        if allowed_special == "none":
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special names unknown special tokens {sorted(unknown)}; "
                                 f"this tokenizer has {sorted(self.special_tokens)}")
        else:
            raise ValueError(f"allowed_special must be 'none', 'all' or a set of strings, not {allowed_special!r}")
        if not allowed:
            return self.encode_ordinary(text)
        out: list[int] = []
        for k, part in enumerate(self._special_pat.split(text)):
            if k % 2 == 1 and part in allowed:   # odd parts are the special strings matched
                out.append(self.special_tokens[part])
            else:
                out += self.encode_ordinary(part)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        vocab, special = self.vocab, self._id_to_special
        try:
            return b"".join(vocab[i] if i in vocab else special[i] for i in map(_token_id, ids))
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in this tokenizer's vocabulary "
                             f"(0..{self.vocab_size - 1})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text. Bytes that are not valid UTF-8 (a cut multi-byte character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __call__(self, text: str, allowed_special: str | set[str] = "none"):
        """Encode to a torch.LongTensor of shape (1, T), ready to feed the model."""
        return torch.tensor([self.encode(text, allowed_special)], dtype=torch.long)

    # -- saving ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything needed to rebuild this tokenizer, as JSON-friendly data."""
        merges = sorted(self.merges.items(), key=lambda kv: kv[1])
        return {"format": FORMAT, "version": FORMAT_VERSION, "pattern": self.pattern,
                "byte_ids": self.byte_ids, "merges": [[a, b, i] for (a, b), i in merges],
                "special_tokens": self.special_tokens}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not a hw5 BPE tokenizer (missing 'format': 'hw5-bpe')")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"tokenizer format version {d.get('version')} is not supported "
                             f"(this code reads version {FORMAT_VERSION})")
        merges = {(a, b): i for a, b, i in d["merges"]}
        return cls(merges, d["special_tokens"], d["pattern"], d["byte_ids"])

    def save(self, path: str | os.PathLike) -> None:
        """Write one JSON file, atomically (a crash never leaves a half-written file)."""
        atomic_write_bytes(path, json.dumps(self.to_dict()).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a valid tokenizer file ({e}); save it again with tok.save()") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, specials={list(self.special_tokens)})"
