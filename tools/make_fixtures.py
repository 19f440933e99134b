"""Generate the small reference fixtures that the graded tests read (tests/graded/fixtures/).

    python tools/make_fixtures.py

The graded tests run on students' machines and in Gradescope with nothing but the handout, so
references that need other libraries or the real data are computed here, once, and stored:

  gpt2_tiny.pt   a randomly initialised transformers GPT2LMHeadModel (tiny: 2 layers, width 32),
                 its state dict, an input batch, and transformers' logits for it. A correct GPT
                 loaded with GPT.from_hf_gpt2 reproduces those logits.
  bpe.json       a short English corpus, the merges an independent naive BPE trainer learns on it
                 (recount every pair at every step), and the ids those merges give a few strings
                 (checked against ids worked out by hand and, when installed, against tiktoken).

Needs transformers (requirements-dev.txt). Re-running gives the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import regex
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "graded" / "fixtures"
sys.path.insert(0, str(ROOT))

from gpt.bpe import GPT2_SPLIT_PATTERN  # noqa: E402

CORPUS = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away. "
    "A truth universally acknowledged: the best way to learn is to build the thing yourself. "
    "Tokenizers learn merges, merges build tokens, and tokens feed the model. "
    "Numbers like 1984, 2024 and 3.14159 are split by the pre-tokenizer. It's what they've said.\n"
) * 3 + "Unicode too: café, naïve, 東京, emoji 🙂🙂.\n"
N_MERGES = 60
ENCODE_STRINGS = ["the best fox", "Tokenizers learn merges", " dog dog dog", "café 🙂", "unseen words here!",
                  "token makers"]
# Worked out by hand from the learned merges (and checked against tiktoken when it is installed): a text on
# which applying the leftmost mergeable pair first gives other ids than applying the lowest-rank merge first.
# " makers" = [32, 109, 97, 107, 101, 114, 115]; its mergeable pairs: (32,109)->267, (107,101)->262,
# (101,114)->259. Lowest rank first: 259 -> [32,109,97,107,259,115]; then (32,109)->267 beats
# (259,115)->271 -> [267,97,107,259,115]; then 271 -> [267, 97, 107, 271]. Leftmost first would take
# 267, then 262 -> [267, 97, 262, 114, 115] and stop. "token" = t o k e n: 262 (k,e), then (262,110)->265.
HAND_CHECKED = {"token makers": [116, 111, 265, 267, 97, 107, 271]}


def naive_train(text: str, n_merges: int):
    """Independent reference: recount all pairs of all pre-token occurrences every step.
    Ties: the pair whose (bytes of a, bytes of b) sorts first."""
    words = [list(w.encode("utf-8")) for w in regex.findall(GPT2_SPLIT_PATTERN, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for k in range(n_merges):
        counts = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        best = min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))
        new_id = 256 + k
        merges.append([best[0], best[1], new_id])
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        words = [_merge(w, best, new_id) for w in words]
    return merges


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_encode(text: str, merges) -> list[int]:
    """Independent reference encoder: for each pre-token, apply every merge in rank order."""
    out = []
    for w in regex.findall(GPT2_SPLIT_PATTERN, text):
        ids = list(w.encode("utf-8"))
        for a, b, new_id in merges:
            ids = _merge(ids, (a, b), new_id)
        out += ids
    return out


def tiktoken_encode(text: str, merges) -> list[int] | None:
    """The same merges run through tiktoken (a third, independent encoder), or None without tiktoken."""
    try:
        import tiktoken
    except ImportError:
        return None
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b, new_id in merges:
        vocab[new_id] = vocab[a] + vocab[b]
    enc = tiktoken.Encoding("fixture", pat_str=GPT2_SPLIT_PATTERN, special_tokens={},
                            mergeable_ranks={v: k for k, v in vocab.items()})
    return enc.encode_ordinary(text)


def gpt2_fixture() -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1234)
    cfg = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():   # larger weights than the default init, so mistakes show in the logits
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    idx = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        logits = hf(idx).logits
    state = {k: v.clone() for k, v in hf.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    return {"config": dict(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0),
            "state_dict": state, "idx": idx, "logits": logits}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    merges = naive_train(CORPUS, N_MERGES)
    bpe = {"corpus": CORPUS, "special_tokens": [], "merges": merges,
           "encode": {s: naive_encode(s, merges) for s in ENCODE_STRINGS}}
    for text, ids in HAND_CHECKED.items():
        assert bpe["encode"][text] == ids, f"the naive encoder disagrees with the hand-computed ids of {text!r}"
    for text, ids in bpe["encode"].items():
        assert tiktoken_encode(text, merges) in (None, ids), f"tiktoken disagrees on {text!r}"
    (OUT / "bpe.json").write_text(json.dumps(bpe, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    torch.save(gpt2_fixture(), OUT / "gpt2_tiny.pt")
    for f in sorted(OUT.iterdir()):
        print(f"wrote {f.relative_to(ROOT)} ({f.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
