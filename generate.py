"""Sampling: load a checkpoint and complete prompts.

    python generate.py --checkpoint runs/train/best.pt --prompt " The best way to learn"
    python generate.py --checkpoint runs/train/best.pt --prompt "" --num-samples 3 --top-p 0.9

An empty prompt samples unconditionally, starting from the <|endoftext|> token as GPT-2 does.
`python main.py sample` takes the same flags.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from gpt.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from gpt.cli import (ArgumentParser, UserError, flag_errors, non_negative_float, non_negative_int, positive_int,
                     probability, run_cli, seed_int)
from gpt.utils import atomic_write_bytes, choose_device, ensure_dir

HANDOUT_PROMPTS = (
    " The best perks of living on the east",
    " It is a truth universally acknowledged",
    " The best way to learn",
    " According to the latest research",
)


def load_model(checkpoint: str, device: str = "auto"):
    """(model, tokenizer) from a checkpoint file; the model is in eval mode on the device."""
    with flag_errors("--device", "use --device auto or cpu"):
        dev = choose_device(device)
    with flag_errors("--checkpoint", "train first (python main.py train) or fix the path",
                     kinds=(FileNotFoundError, CheckpointError)):
        model, tok = model_from_checkpoint(load_checkpoint(checkpoint, map_location=dev), dev)
    if tok is None:
        raise UserError(f"{checkpoint} holds no tokenizer, so its ids cannot be turned into text")
    return model, tok


def complete(model, tok, prompt: str, num_samples: int = 1, max_new_tokens: int = 100,
             temperature: float = 0.8, top_k: int | None = None, top_p: float | None = 0.95,
             greedy: bool = False, seed: int | None = 0) -> list[str]:
    """Return `num_samples` completions of `prompt` (the new text only, stopping at <|endoftext|>)."""
    device = next(model.parameters()).device
    ids = tok.encode(prompt) if prompt else []
    if not ids:
        if tok.eot_id is None:
            raise UserError("an empty prompt needs a tokenizer with <|endoftext|>; give a prompt")
        ids = [tok.eot_id]
    block = model.config.block_size
    idx = torch.tensor([ids[-block:]] * num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    out = model.generate(idx, max_new_tokens, temperature=temperature, do_sample=not greedy,
                         top_k=top_k, top_p=top_p, eos_id=tok.eot_id, generator=generator)
    texts = []
    for row in out[:, idx.size(1):].tolist():
        if tok.eot_id is not None and tok.eot_id in row:
            row = row[:row.index(tok.eot_id)]
        texts.append(tok.decode(row))
    return texts


# -- command line -----------------------------------------------------------------------------

def add_sampling_args(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required, help="checkpoint file (best.pt or last.pt)")
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt text; repeat for several (default: the four handout prompts)")
    p.add_argument("--num-samples", type=positive_int, default=1, help="completions per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=non_negative_int, default=100, help="tokens to add (default 100)")
    p.add_argument("--temperature", type=non_negative_float, default=0.8,
                   help="softmax temperature; 0 means greedy (default 0.8)")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample only from the k most likely tokens")
    p.add_argument("--top-p", type=probability, default=0.95, help="nucleus sampling mass in (0, 1] (default 0.95)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed for sampling (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")


def run_sampling(args) -> int:
    model, tok = load_model(args.checkpoint, args.device)
    greedy = args.greedy or args.temperature == 0
    blocks = []
    for prompt in args.prompt if args.prompt is not None else HANDOUT_PROMPTS:
        outs = complete(model, tok, prompt, args.num_samples, args.max_new_tokens,
                        temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p,
                        greedy=greedy, seed=args.seed)
        for k, text in enumerate(outs):
            label = f"[{k + 1}/{len(outs)}] " if len(outs) > 1 else ""
            blocks.append(f"{label}{prompt!r} ->{prompt}{text}")
            print(blocks[-1] + "\n")
    if getattr(args, "out_dir", None):   # main.py sample: keep them
        with flag_errors("--out-dir", "choose another --out-dir", kinds=(OSError,)):
            path = os.path.join(ensure_dir(args.out_dir), "samples.txt")
            atomic_write_bytes(path, ("\n\n".join(blocks) + "\n").encode("utf-8"))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = ArgumentParser(prog="generate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampling_args(p)
    return run_cli(lambda: run_sampling(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
