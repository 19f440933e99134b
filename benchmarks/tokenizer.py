"""Tokenizer speed against the libraries people would otherwise use, on the same text.

    python benchmarks/tokenizer.py [--scale 1]

Training: our BPETokenizer.train vs HF tokenizers' BpeTrainer (byte-level, same regex, same
vocabulary size 8192) on WikiText-2 train (x scale). Encoding: our GPT-2 tokenizer vs tiktoken
"gpt2" (single thread) on WikiText-2 raw valid (x scale), first call (cold cache) and repeated.
"""

from __future__ import annotations

import argparse
import time

from common import best_of, data_file

from gpt.bpe import BPETokenizer, GPT2_SPLIT_PATTERN


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=1, help="concatenate the text this many times")
    ap.add_argument("--vocab-size", type=int, default=8192)
    args = ap.parse_args()

    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    train_text = data_file("wikitext-2", "wiki.train.tokens").read_text(encoding="utf-8") * args.scale
    mb = len(train_text.encode()) / 1e6
    print(f"training: vocab {args.vocab_size} on WikiText-2 train x{args.scale} ({mb:.1f} MB)")
    t0 = time.perf_counter()
    ours = BPETokenizer.train(train_text, args.vocab_size)
    t_ours = time.perf_counter() - t0

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    lines = train_text.splitlines(keepends=True)
    t0 = time.perf_counter()
    hf.train_from_iterator((lines[i:i + 1000] for i in range(0, len(lines), 1000)), trainer, length=len(lines))
    t_hf = time.perf_counter() - t0
    print(f"  ours            {t_ours:7.2f} s   ({len(ours.merges)} merges)")
    print(f"  HF tokenizers   {t_hf:7.2f} s   ({hf.get_vocab_size()} tokens)")
    print(f"  ours / HF time  {t_ours / t_hf:7.2f}x   (target <= 3x)")

    valid = data_file("wikitext-2-raw", "wiki.valid.raw").read_text(encoding="utf-8") * args.scale
    mb = len(valid.encode()) / 1e6
    gpt2 = BPETokenizer.from_gpt2(data_file("gpt2", "encoder.json"), data_file("gpt2", "vocab.bpe"))
    ranks = data_gym_to_mergeable_bpe_ranks(str(data_file("gpt2", "vocab.bpe")), str(data_file("gpt2", "encoder.json")))
    tk = tiktoken.Encoding("gpt2-local", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                           special_tokens={"<|endoftext|>": 50256})
    print(f"encoding: GPT-2 vocabulary on WikiText-2 raw valid x{args.scale} ({mb:.1f} MB)")
    t0 = time.perf_counter()
    ids = gpt2.encode(valid)
    cold = time.perf_counter() - t0
    warm = best_of(lambda: gpt2.encode(valid))
    t_tk = best_of(lambda: tk.encode_ordinary(valid))
    assert ids == tk.encode_ordinary(valid), "ids differ from tiktoken"
    print(f"  ours, first call   {mb / cold:6.2f} MB/s")
    print(f"  ours, cache warm   {mb / warm:6.2f} MB/s")
    print(f"  tiktoken           {mb / t_tk:6.2f} MB/s")
    print(f"  ours / tiktoken    {t_tk / warm:6.2f}x speed (warm; target >= 0.4x), {t_tk / cold:.2f}x (first call)")


if __name__ == "__main__":
    main()
