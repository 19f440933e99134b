"""Sampling: load a checkpoint and complete prompts.

    python generate.py --checkpoint runs/train/best.pt --prompt " The best way to learn"
    python generate.py --checkpoint runs/train/best.pt --prompt "" --num-samples 3 --top-p 0.9
    python generate.py --checkpoint runs/train/best.pt --temperature 0.5 1.0 1.5 --top-p 0.9 1.0
    python generate.py --checkpoint runs/train/best.pt --compare gpt2 --gpt2-dir ../shared/data/gpt2

An empty prompt samples unconditionally, starting from the <|endoftext|> token as GPT-2 does.
`python main.py sample` takes the same flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from gpt.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from app.cli import (ArgumentParser, UserError, flag_errors, non_negative_float, non_negative_int, positive_int,
                     probability, run_cli, seed_int)
from gpt.pretrained import PretrainedError, load_gpt2
from app.sampling_view import Setting, markdown_table, plot_next_token, settings_grid, visible
from gpt.utils import atomic_write_bytes, choose_device, ensure_dir

HANDOUT_PROMPTS = (
    " The best perks of living on the east",
    " It is a truth universally acknowledged",
    " The best way to learn",
    " According to the latest research",
)


def load_model(args, source: str | None = None):
    """(model, tokenizer, checkpoint dict or None) from --checkpoint or --init-from (or `source`, either
    kind: a checkpoint file, or a GPT-2 name or folder); the model is in eval mode on --device."""
    with flag_errors("--device", "use --device auto or cpu"):
        dev = choose_device(args.device)
    flag = "--compare" if source else "--init-from"
    source = source or args.init_from
    if source is None or os.path.isfile(source) or source.endswith(".pt"):
        path = source or args.checkpoint
        which = "--checkpoint" if source is None else flag
        with flag_errors(which, "train first (python main.py train) or fix the path",
                         kinds=(FileNotFoundError, CheckpointError)):
            ckpt = load_checkpoint(path, map_location=dev)
            model, tok = model_from_checkpoint(ckpt, dev)
        if tok is None:
            raise UserError(f"{path} holds no tokenizer, so its ids cannot be turned into text")
        return model, tok, ckpt
    with flag_errors(flag, kinds=(PretrainedError,)):
        model, tok = load_gpt2(source, args.gpt2_dir)
    return model.to(dev), tok, None


def prompt_ids(tok, prompt: str, block_size: int) -> list[int]:
    """The prompt's token ids (its last block_size); an empty prompt is <|endoftext|>, as GPT-2 starts."""
    ids = tok.encode(prompt) if prompt else []
    if not ids:
        if tok.eot_id is None:
            raise UserError("an empty prompt needs a tokenizer with <|endoftext|>; give a prompt")
        ids = [tok.eot_id]
    return ids[-block_size:]


def prompt_seed(seed: int | None, k: int) -> int | None:
    """The seed of the k-th prompt: each prompt draws its own random numbers, not prompt 0's again."""
    return None if seed is None else seed + k


def complete(model, tok, prompt: str, num_samples: int = 1, max_new_tokens: int = 100,
             temperature: float = 0.8, top_k: int | None = None, top_p: float | None = 0.95,
             greedy: bool = False, seed: int | None = 0) -> list[str]:
    """Return `num_samples` completions of `prompt` (the new text only, stopping at <|endoftext|>)."""
    device = next(model.parameters()).device
    ids = prompt_ids(tok, prompt, model.config.block_size)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    out = model.generate(idx, max_new_tokens, temperature=temperature, do_sample=not greedy,
                         top_k=top_k, top_p=top_p, eos_id=tok.eot_id, generator=generator)
    texts = []
    for row in out[:, idx.size(1):].tolist():
        if tok.eot_id is not None and tok.eot_id in row:
            row = row[:row.index(tok.eot_id)]
        texts.append(tok.decode(row))
    return texts


def complete_with(model, tok, prompt: str, setting: Setting, args, seed: int | None) -> list[str]:
    return complete(model, tok, prompt, args.num_samples, args.max_new_tokens, temperature=setting.temperature or 1.0,
                    top_k=setting.top_k, top_p=setting.top_p, greedy=setting.greedy, seed=seed)


# -- command line -----------------------------------------------------------------------------

def add_source_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--checkpoint or --init-from (one of them), and --gpt2-dir: where the model comes from."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--checkpoint", help="checkpoint file (best.pt or last.pt)")
    g.add_argument("--init-from", metavar="gpt2|gpt2-medium|gpt2-large|gpt2-xl|DIR",
                   help="pretrained GPT-2 weights through transformers (the Hugging Face cache, a download, or "
                        "a folder saved with save_pretrained), with GPT-2's tokenizer")
    p.add_argument("--gpt2-dir", default=None,
                   help="folder with GPT-2's encoder.json and vocab.bpe, for GPT-2 weights (default: the model's "
                        "folder, else the Hugging Face cache)")


def add_sampling_args(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    add_source_args(p, checkpoint_required)
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt text; repeat for several (default: the four handout prompts)")
    p.add_argument("--num-samples", type=positive_int, default=1, help="completions per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=non_negative_int, default=100, help="tokens to add (default 100)")
    p.add_argument("--temperature", type=non_negative_float, nargs="+", default=[0.8],
                   help="softmax temperature; 0 means greedy (default 0.8); several values: every combination "
                        "with the --top-p and --top-k values, side by side")
    p.add_argument("--top-k", type=positive_int, nargs="+", default=[None],
                   help="sample only from the k most likely tokens (several values: see --temperature)")
    p.add_argument("--top-p", type=probability, nargs="+", default=[0.95],
                   help="nucleus sampling mass in (0, 1] (default 0.95; several values: see --temperature)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="random seed for sampling (default 0); prompt k uses seed + k, every setting the same")
    p.add_argument("--compare", metavar="gpt2|...|DIR|CKPT",
                   help="a second model (GPT-2 weights or a checkpoint): both complete the same prompts")
    p.add_argument("--show-distribution", action="store_true",
                   help="also plot each prompt's next-token distribution under every setting (needs --out-dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")


def run_sampling(args) -> int:
    """Complete the prompts with every model and setting; print them, and keep them in --out-dir."""
    models = [(args.checkpoint or args.init_from, *load_model(args)[:2])]
    if args.compare:
        models.append((args.compare, *load_model(args, args.compare)[:2]))
    settings = [Setting(0.0)] if args.greedy else settings_grid(args.temperature, args.top_p, args.top_k)
    out_dir = getattr(args, "out_dir", None)
    if args.show_distribution and not out_dir:
        raise UserError("--show-distribution writes pictures: use python main.py sample (it has --out-dir)")
    prompts = args.prompt if args.prompt is not None else list(HANDOUT_PROMPTS)
    side_by_side = len(settings) > 1 or len(models) > 1
    blocks, records = [], []
    for k, prompt in enumerate(prompts):
        if side_by_side:
            print(f"{prompt!r}")
        for r in sample_prompt(models, prompt, prompt_seed(args.seed, k), settings, args):
            tags = [r["setting"]] * (len(settings) > 1) + [r["model"]] * (len(models) > 1)
            tags += [f"{r['sample']}/{args.num_samples}"] * (args.num_samples > 1)
            blocks.append("".join(f"[{t}] " for t in tags) + f"{prompt!r} ->{prompt}{r['completion']}")
            print(("  " if side_by_side else "") + blocks[-1] + "\n")
            records.append(r)
    if out_dir:
        with flag_errors("--out-dir", "choose another --out-dir", kinds=(OSError,)):
            written = write_samples(ensure_dir(out_dir), blocks, records if side_by_side else None, models)
            if args.show_distribution:
                written += plot_distributions(out_dir, models, prompts, settings)
        print("wrote " + ", ".join(written), file=sys.stderr)
    return 0


def sample_prompt(models, prompt: str, seed: int | None, settings: list[Setting], args) -> list[dict]:
    """Every model's completions of one prompt under every setting, all from the same seed."""
    records = []
    for s in settings:
        for name, model, tok in models:
            for j, text in enumerate(complete_with(model, tok, prompt, s, args, seed)):
                records.append({"prompt": prompt, "setting": s.label(), "temperature": s.temperature,
                                "top_p": s.top_p, "top_k": s.top_k, "seed": seed, "model": name,
                                "sample": j + 1, "completion": text})
    return records


def write_samples(out_dir: str, blocks: list[str], records: list[dict] | None, models) -> list[str]:
    """samples.txt; side by side also samples.md (one row per prompt and setting, a column per model)
    and samples.json (every completion with its setting, seed and model)."""
    path = os.path.join(out_dir, "samples.txt")
    atomic_write_bytes(path, ("\n\n".join(blocks) + "\n").encode("utf-8"))
    if records is None:
        return [path]
    names = [name for name, _, _ in models]
    rows = {}
    for r in records:
        key = (r["prompt"], r["setting"], r["seed"], r["sample"])
        rows.setdefault(key, {})[r["model"]] = r["completion"]
    table = markdown_table(["prompt", "setting", "seed", "sample", *names],
                           [[repr(p), s, seed, j, *(cells.get(n, "") for n in names)]
                            for (p, s, seed, j), cells in rows.items()])
    md, js = os.path.join(out_dir, "samples.md"), os.path.join(out_dir, "samples.json")
    atomic_write_bytes(md, table.encode("utf-8"))
    atomic_write_bytes(js, json.dumps(records, indent=1, ensure_ascii=False).encode("utf-8"))
    return [path, md, js]


def plot_distributions(out_dir: str, models, prompts: list[str], settings: list[Setting]) -> list[str]:
    """distribution-<prompt k>[-<model m>].png: the next-token distribution of each prompt per setting."""
    written = []
    for m, (name, model, tok) in enumerate(models):
        device = next(model.parameters()).device
        for k, prompt in enumerate(prompts):
            idx = torch.tensor([prompt_ids(tok, prompt, model.config.block_size)], device=device)
            with torch.inference_mode():
                logits = model.next_logits(idx)[0].cpu()                              # (V,)
            suffix = f"-model{m + 1}" if len(models) > 1 else ""
            path = os.path.join(out_dir, f"distribution-{k + 1}{suffix}.png")
            plot_next_token(path, logits, settings, lambda i: visible(tok.decode([i])),
                            f"{name}: next token after {prompt!r}")
            written.append(path)
    return written


def main(argv=None) -> int:
    p = ArgumentParser(prog="generate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampling_args(p)
    return run_cli(lambda: run_sampling(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
