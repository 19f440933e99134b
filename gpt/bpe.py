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

Words used here, one per thing: a text; a chunk (a slice of a long text, read or
encoded one at a time); a pre-token (one string of the pattern's split); token
ids. Counting and encoding a whole corpus chunk by chunk, in worker processes,
is in app/bpe_corpus.py (next to the data pipeline, app/data.py); this file is the tokenizer itself.
"""

from __future__ import annotations

import heapq
import json
import operator
import os
from collections import Counter, defaultdict
from typing import Iterable, Iterator

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
    a negative weight takes a pre-token's pairs back out.
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
# Training's input. A merge never crosses a pre-token boundary, so training needs
# only each distinct pre-token and how often it occurs, not the text itself.


class PretokenCounts(Counter):
    """Pre-token -> how often it occurs, as count_pretokens returns it, remembering the pattern and the
    special tokens it was counted with. BPETokenizer.train accepts it in place of text (so the counting can
    be done elsewhere: app/bpe_corpus.py counts a corpus chunk by chunk, in worker processes) and refuses one
    counted with another pattern."""

    def __init__(self, counts=(), pattern: str = GPT2_SPLIT_PATTERN, special_tokens: Iterable[str] = ()):
        super().__init__(counts)
        self.pattern, self.special_tokens = pattern, tuple(sorted(set(special_tokens)))


def count_pretokens(texts: Iterable[str], pattern: str = GPT2_SPLIT_PATTERN,
                    special_tokens: Iterable[str] = ()) -> PretokenCounts:
    """Count how often each pre-token occurs in `texts`. Special tokens are cut out first and never counted.

    Example: count_pretokens(["the cat and the dog"]) -> {"the": 1, " cat": 1, " and": 1, " the": 1, " dog": 1}.
    `texts` is read lazily, one string at a time, and each string is pre-tokenized on its own, so a corpus
    can be counted in chunks if each chunk ends where the whole text's pre-tokens end anyway
    (app.bpe_corpus.chunks_for_pretokenizer cuts them so). Given a PretokenCounts (counted earlier with the same
    pattern and special tokens), returns it as is.
    """
    special_tokens = list(special_tokens)
    if isinstance(texts, PretokenCounts):
        if texts.pattern != pattern or texts.special_tokens != tuple(sorted(set(special_tokens))):
            raise ValueError("these pre-token counts were made with another pattern or other special tokens")
        return texts
    counts = PretokenCounts(pattern=pattern, special_tokens=special_tokens)
    findall = regex.compile(pattern).findall
    specials = sorted(special_tokens, key=len, reverse=True)      # longest first, where one contains another
    split = regex.compile("|".join(regex.escape(s) for s in specials)).split if specials else None
    for text in texts:
        for part in (split(text) if split else (text,)):
            counts.update(findall(part))
    return counts


def _to_utf8(pretoken: str) -> bytes:
    """UTF-8 bytes of a pre-token; a lone surrogate (not valid Unicode text) becomes U+FFFD, as in tiktoken."""
    try:
        return pretoken.encode("utf-8")
    except UnicodeEncodeError:
        return pretoken.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _merge_in_pretokens(pretokens: list[list[int]], freqs: list[int], where: dict, pair: tuple[int, int],
                        new_id: int) -> dict[tuple[int, int], int]:
    """Merge `pair` into new_id in every pre-token (a list of ids) that holds it (where[pair] lists their
    indices), keeping `where` up to date; returns how each pair's count changes (weighted by the pre-tokens'
    frequencies)."""
    delta: dict[tuple[int, int], int] = {}
    for i in where.pop(pair):
        old = pretokens[i]
        new = merge(old, pair, new_id)
        if len(new) == len(old):
            continue  # the index is stale: an earlier merge already removed the pair here
        count_pairs(old, delta, -freqs[i])
        count_pairs(new, delta, freqs[i])
        pretokens[i] = new
        for p in zip(new, new[1:]):
            where[p].add(i)
    return delta


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


# ----------------------------------------------------------------------------
# Encoding and decoding helpers.


class _PretokenCache(dict):
    """pre-token -> its ids, encoding (and remembering) a pre-token on its first lookup."""

    def __init__(self, encode_pretoken):
        super().__init__()
        self._encode_pretoken = encode_pretoken

    def __missing__(self, pretoken: str) -> list[int]:
        ids = self[pretoken] = self._encode_pretoken(pretoken)
        return ids


def _token_id(i) -> int:
    """An id as a Python int: ints, NumPy integers and integer 0-d tensors pass; floats and bools are
    a TypeError (int(2.7) would silently decode token 2)."""
    if isinstance(i, bool) or getattr(i, "dtype", None) == torch.bool:
        raise TypeError(f"token ids are integers, got the bool {i!r}")
    try:
        return operator.index(i)
    except TypeError:
        raise TypeError(f"token ids are integers, got {type(i).__name__} {i!r}") from None


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
        self._cache: dict[str, list[int]] = _PretokenCache(self.encode_pretoken)

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
        its frequency, pair counts are kept up to date, and a merge only revisits the
        pre-tokens that contain the merged pair. If the corpus runs out of pairs first, the
        vocabulary is smaller than asked. `text` may also be a PretokenCounts (counted
        elsewhere with the same pattern and special tokens).
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least "
                             f"256 + {len(special_tokens)} special tokens")
        texts = [text] if isinstance(text, str) else text
        counts = count_pretokens(texts, pattern, special_tokens)

        pretokens = [list(_to_utf8(p)) for p in counts]           # each distinct pre-token, as ids
        freqs = list(counts.values())                             # how often it occurs
        vocab = {i: bytes([i]) for i in range(256)}                # id -> its bytes (ties compare these)
        merges: dict[tuple[int, int], int] = {}                    # (a, b) -> new id, in the order learned
        # TODO(bpe-train): learn up to n_merges merges into `merges` (and `vocab`). Each step:
        # - find the most frequent adjacent pair over all pre-tokens, each counted with its frequency
        #   (count_pairs(pretoken, pair_counts, weight=freq)); stop early when no pair is left;
        # - ties: the pair whose bytes come first, i.e. the smallest (vocab[a], vocab[b]). Compare the
        #   BYTES, not the ids: the merged token 256 = b"ab" comes before the byte 99 = b"c";
        # - record it: new_id = 256 + len(merges); merges[(a, b)] = new_id; vocab[new_id] = vocab[a] + vocab[b];
        # - replace the pair in every pre-token with merge() (so "aaaa" -> [256, 256], whose pair
        #   (256, 256) is counted once next time).
        # The simple way (recount all pairs with count_pairs every step, then merge every pre-token) is correct
        # and fine on small corpora. The real run trains on millions of characters: the solution is
        # incremental (the hint): count once; keep `where` (pair -> indices of the pre-tokens holding it) and
        # let _merge_in_pretokens(pretokens, freqs, where, pair, new_id) merge only those pre-tokens and return
        # how each pair's count changed; keep the counts in a heap (heapq, counts negated) and skip popped
        # entries whose count is out of date.
        ### BEGIN SOLUTION
        pair_counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of pre-tokens holding it
        for i, (pretoken, f) in enumerate(zip(pretokens, freqs)):
            count_pairs(pretoken, pair_counts, f)
            for pair in zip(pretoken, pretoken[1:]):
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
            delta = _merge_in_pretokens(pretokens, freqs, where, (a, b), new_id)
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
    def pretokens(self, text: str) -> list[str]:
        """Step 1 of encoding: `text` cut into pre-tokens by self.pattern, in order; they join back to
        `text`. Special-token strings are cut like any other text here (encode() handles them).
        Example (GPT-2's pattern): "Hello, world!" -> ["Hello", ",", " world", "!"]."""
        return self._pat.findall(text)

    def encode_pretoken(self, pretoken: str) -> list[int]:
        """Encode one pre-token (one string of self.pretokens(text), e.g. " world"): start from its
        bytes, then apply merges lowest id first. Returns its token ids."""
        ids = [self.byte_ids[b] for b in _to_utf8(pretoken)]
        merges = self.merges
        # TODO(bpe-encode-pretoken): while at least two tokens remain, find the adjacent pair
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

    def pretoken_ids(self, pretokens: Iterable[str]) -> Iterator[list[int]]:
        """The token ids of each pre-token in turn (lazily), as encode_pretoken gives them. Each distinct
        pre-token is encoded once and remembered: text repeats its words, so nearly every pre-token is a
        lookup. (The memory is emptied when it holds more than _CACHE_LIMIT pre-tokens.) Do not change the
        lists it yields: they are the remembered ones."""
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        return map(cache.__getitem__, pretokens)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating special-token strings as plain text: its pre-tokens' ids, in order."""
        out: list[int] = []
        for ids in self.pretoken_ids(self.pretokens(text)):
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
