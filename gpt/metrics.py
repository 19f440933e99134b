"""The metrics, one definition everywhere (train, eval, experiments).

- loss: mean negative log-likelihood in nats per predicted token (padding excluded)
- perplexity: exp(total NLL / total predicted tokens) over the whole split
- word-level perplexity: exp(total NLL / words), words counted as WikiText does, so that models with
  different tokenizers compare (and so do published WikiText-2 results)
- bits per byte: total NLL / (ln 2 x UTF-8 bytes of the evaluated text)
"""

from __future__ import annotations

import math


def count_words(text: str) -> int:
    """Words as WikiText counts them: whitespace-separated tokens plus one end-of-line per line."""
    lines = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
    return len(text.split()) + lines


def perplexity(nll: float, count: int) -> float:
    """exp(nll / count), capped so that a diverged model gives a huge number rather than an overflow."""
    return math.exp(min(nll / count, 700.0))


def text_metrics(nll: float, tokens: int, text: str) -> dict:
    """loss, perplexity, word-level perplexity and bits per byte of a total NLL over `text`."""
    return split_metrics(nll, tokens, count_words(text), len(text.encode("utf-8")))


def split_metrics(nll: float, tokens: int, words: int, nbytes: int) -> dict:
    """text_metrics from the text's word count and UTF-8 size (a streamed split's data.SplitStats)."""
    return {"loss": nll / tokens, "ppl": perplexity(nll, tokens), "word_ppl": perplexity(nll, words),
            "bits_per_byte": nll / (math.log(2) * nbytes), "tokens": tokens, "words": words, "bytes": nbytes}


def describe_metrics(m: dict) -> str:
    return (f"loss {m['loss']:.4f}, perplexity {m['ppl']:.2f}, word-level perplexity {m['word_ppl']:.2f}, "
            f"bits per byte {m['bits_per_byte']:.4f}")
