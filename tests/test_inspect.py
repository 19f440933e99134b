"""What students look at (issue 15): attention maps, sampling settings side by side, GPT-2 beside their
model, and perplexity with overlapping windows. Library checks against independent computations first,
then the commands, run in-process on a tiny checkpoint and a tiny random GPT-2 saved to a folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import data_path
from app.attention_maps import attention_weights
from gpt.model import GPT, GPTConfig
from gpt.sampling import next_token
from app.sampling_view import Setting, setting_probs, settings_grid
from gpt.trainer import evaluate
from gpt.windows import eval_windows


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=61, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


# -- attention maps ---------------------------------------------------------------------------

def by_hand_weights(attn, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) over keys s <= t, one query t at a time: (B, nh, T, T)."""
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    q, k, _ = attn.c_attn(x).split(C, dim=2)
    w = torch.zeros(B, nh, T, T)
    for h in range(nh):
        for t in range(T):
            scores = torch.einsum("bd,bsd->bs", q[:, t, h * hs:(h + 1) * hs], k[:, :t + 1, h * hs:(h + 1) * hs])
            w[:, h, t, :t + 1] = torch.softmax(scores / math.sqrt(hs), dim=-1)
    return w


def block_io(model, x):
    """(input, output) of every block's attention in a normal forward pass."""
    seen = []
    hooks = [b.attn.register_forward_hook(lambda m, i, o: seen.append((i[0], o))) for b in model.transformer.h]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
def test_attention_weights_are_causal_and_equal_a_by_hand_softmax(attn_impl):
    model = tiny_gpt(attn_impl=attn_impl)
    x = torch.randint(0, 61, (3, 7))
    w = attention_weights(model, x)                                              # (L, B, nh, T, T)
    assert w.shape == (2, 3, 2, 7, 7)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 2, 7), atol=1e-6)
    assert torch.all(w.triu(1) == 0), "nothing above the diagonal: no looking at the future"
    with torch.no_grad():
        for layer, (block, (inp, _)) in enumerate(zip(model.transformer.h, block_io(model, x))):
            assert torch.allclose(w[layer], by_hand_weights(block.attn, inp), atol=1e-6)
    assert model.transformer.h[0].attn.attn_impl == attn_impl, "the model is left as it was"


def test_attention_weights_times_v_give_the_fused_attention_output():
    model = tiny_gpt(attn_impl="sdpa")   # SDPA never forms the weights: they must reproduce its output
    x = torch.randint(0, 61, (2, 8))
    w = attention_weights(model, x)
    with torch.no_grad():
        for layer, (block, (inp, out)) in enumerate(zip(model.transformer.h, block_io(model, x))):
            B, T, C = inp.shape
            v = block.attn.c_attn(inp).split(C, dim=2)[2].view(B, T, 2, C // 2).transpose(1, 2)   # (B, nh, T, hs)
            y = (w[layer] @ v).transpose(1, 2).reshape(B, T, C)
            assert torch.allclose(block.attn.c_proj(y), out, atol=1e-5)


# -- sampling settings ------------------------------------------------------------------------

def test_settings_grid_is_every_combination_with_greedy_once():
    grid = settings_grid([0.5, 1.0, 0], [0.9, 1.0], [None, 5])
    assert len(grid) == 2 * 2 * 2 + 1 and grid[-1] == Setting(0.0)
    assert grid[0] == Setting(0.5, 0.9, None) and grid[0].label() == "T=0.5 top-p=0.9"
    assert Setting(1.0, 1.0).label() == "T=1 (no cut)"


def test_setting_probs_are_what_sampling_draws_from():
    torch.manual_seed(0)
    logits = torch.randn(200) * 2
    p1, _ = setting_probs(logits, Setting(1.0))
    cold, _ = setting_probs(logits, Setting(0.5))
    hot, _ = setting_probs(logits, Setting(1.5))
    assert torch.allclose(p1, torch.softmax(logits, -1))
    assert cold.max() > p1.max() > hot.max(), "temperature below 1 sharpens, above 1 flattens"
    tempered, final = setting_probs(logits, Setting(0.7, top_p=0.9))
    kept = final > 0
    ranked = tempered.sort(descending=True).values
    n = int(kept.sum())
    assert ranked[:n].sum() >= 0.9 > ranked[:n - 1].sum(), "the smallest set holding 90% of the mass"
    assert torch.allclose(final[kept], tempered[kept] / tempered[kept].sum(), atol=1e-6)
    assert int((setting_probs(logits, Setting(1.0, top_k=5))[1] > 0).sum()) == 5
    g = torch.Generator().manual_seed(1)
    draws = next_token(logits.repeat(500, 1), 0.7, True, None, 0.9, g)
    assert kept[draws].all(), "sampling never picks a token the picture shows as cut"
    assert setting_probs(logits, Setting(0.0))[1].argmax() == logits.argmax()


# -- perplexity with overlapping windows ------------------------------------------------------

def token_by_token_nll(model, ids: np.ndarray, block: int, stride: int) -> float:
    """Each target j (the token after position j) scored once, from the start of the first window that
    reaches it: window k starts at k * stride and reaches j when k * stride + block > j."""
    total = 0.0
    for j in range(len(ids) - 1):
        start = max(0, (j - block) // stride + 1) * stride
        ctx = torch.from_numpy(ids[start:j + 1].astype(np.int64))[None]
        with torch.no_grad():
            logp = F.log_softmax(model(ctx)[0][0, -1], dim=-1)
        total -= float(logp[int(ids[j + 1])])
    return total


@pytest.mark.parametrize("stride", [1, 3, 5, 8])
def test_strided_eval_equals_a_token_by_token_computation(stride):
    model = tiny_gpt()
    ids = np.random.default_rng(stride).integers(0, 61, size=45)
    res = evaluate(model, ids, 8, batch_size=4, stride=stride)
    assert res.tokens == len(ids) - 1, "every token predicted exactly once"
    assert res.nll == pytest.approx(token_by_token_nll(model, ids, 8, stride), rel=1e-5)
    if stride == 1:   # past the start, every token sees exactly block_size - 1 tokens of context
        with torch.no_grad():
            sliding = sum(-float(F.log_softmax(model(torch.tensor(ids[max(0, j - 7):j + 1])[None])[0][0, -1], -1)
                                 [ids[j + 1]]) for j in range(len(ids) - 1))
        assert res.nll == pytest.approx(sliding, rel=1e-5)


def test_stride_block_size_is_the_non_overlapping_walk():
    ids = np.arange(20)
    default = list(eval_windows(ids, 8, 2))
    same = list(eval_windows(ids, 8, 2, stride=8))
    assert all(torch.equal(a, b) for wa, wb in zip(default, same) for a, b in zip(wa, wb))
    x, _, m = default[0]
    assert x[1, 0] == 8 and m[0].all() and m[1].all()   # windows at 0 and 8, every position scored
    x, _, m = next(iter(eval_windows(ids, 8, 4, stride=4)))
    assert x[1, 0] == 4 and m[1].tolist() == [0] * 4 + [1] * 4, "an overlapping window scores only its new tokens"
    with pytest.raises(ValueError, match="stride"):
        next(eval_windows(ids, 8, 2, stride=9))


# -- GPT-2 weights -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """A randomly initialised GPT-2 with GPT-2's vocabulary, saved as transformers saves gpt2."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50257, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_gpt2_folder_loads_with_the_same_logits_as_transformers(tiny_gpt2_dir):
    from transformers import GPT2LMHeadModel
    from gpt.pretrained import load_gpt2, with_block_size
    model, tok = load_gpt2(str(tiny_gpt2_dir), str(data_path("gpt2")))
    assert tok.vocab_size == 50257 and model.config.block_size == 64
    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()
    x = torch.tensor([tok.encode(" The best way to learn is to teach, said nobody in particular.")])
    with torch.no_grad():
        assert torch.allclose(model(x)[0], hf(x).logits, atol=1e-5, rtol=0)
        short = with_block_size(model, 16)
        assert short.config.block_size == 16 and torch.allclose(short(x[:, :16])[0], hf(x[:, :16]).logits, atol=1e-5)


def test_a_missing_model_or_transformers_is_one_clear_error(monkeypatch, tmp_path):
    import sys
    import gpt.pretrained as pretrained
    monkeypatch.setattr(pretrained, "network_available", lambda: False)
    with pytest.raises(pretrained.PretrainedError, match="no network"):
        pretrained.load_gpt2("gpt2-no-such-model")
    with pytest.raises(pretrained.PretrainedError, match="save_pretrained"):
        pretrained.load_gpt2(str(tmp_path))   # a folder without config.json
    monkeypatch.setitem(sys.modules, "transformers", None)   # as if it were not installed
    with pytest.raises(pretrained.PretrainedError, match="pip install transformers"):
        pretrained.load_gpt2("gpt2")


# -- the commands ------------------------------------------------------------------------------

def run_main(capsys, *argv) -> tuple[int, str, str]:
    """python main.py ARGV, in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    import main
    try:
        code = main.main([str(a) for a in argv])
    except SystemExit as e:   # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny checkpoint trained on a small text file (300 lines of WikiText-2)."""
    import main
    root = tmp_path_factory.mktemp("inspect")
    lines = data_path("wikitext-2", "wiki.valid.tokens").read_text(encoding="utf-8").splitlines()[:300]
    corpus = root / "small.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main.main(["train", "--corpus", str(corpus), "--vocab-size", "300", "--n-layer", "2", "--n-head", "2",
                      "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--max-iters", "4",
                      "--eval-interval", "2", "--eval-batches", "2", "--no-progress", "--max-new-tokens", "4",
                      "--out-dir", str(root / "train"), "--cache-dir", str(root / "cache")])
    assert code == 0
    return root, root / "train" / "best.pt", corpus


def test_attention_command_writes_the_maps(tiny_run, tiny_gpt2_dir, capsys):
    root, ckpt, _ = tiny_run
    code, out, _ = run_main(capsys, "attention", "--checkpoint", ckpt, "--prompt", " The best way to learn",
                            "--out-dir", root / "att")
    assert code == 0 and "attention.png" in out
    w = np.load(root / "att" / "attention.npy")
    meta = json.loads((root / "att" / "attention.json").read_text())
    T = len(meta["ids"])
    assert w.shape == (2, 2, T, T) and (root / "att" / "attention.png").stat().st_size > 0
    assert np.allclose(w.sum(-1), 1, atol=1e-5) and np.triu(w, 1).max() == 0
    code, _, _ = run_main(capsys, "attention", "--init-from", tiny_gpt2_dir, "--gpt2-dir", data_path("gpt2"),
                          "--layer", "1", "--head", "0", "--out-dir", root / "att-gpt2")
    assert code == 0 and np.load(root / "att-gpt2" / "attention.npy").shape[:2] == (1, 1)
    code, _, err = run_main(capsys, "attention", "--checkpoint", ckpt, "--head", "5", "--out-dir", root / "x")
    assert code == 2 and err.strip() == "error: --head 5 does not exist: the model has 2 (numbered 0..1)"


def test_sample_grid_same_seed_per_prompt_and_distribution_plots(tiny_run, capsys):
    root, ckpt, _ = tiny_run
    out_dir = root / "grid"
    code, out, err = run_main(capsys, "sample", "--checkpoint", ckpt, "--prompt", " The cat", "--prompt", " It is",
                              "--temperature", "0.5", "1.0", "1.5", "--top-p", "0.9", "1.0", "--max-new-tokens", "6",
                              "--seed", "7", "--show-distribution", "--out-dir", out_dir)
    assert code == 0
    records = json.loads((out_dir / "samples.json").read_text())
    assert len(records) == 2 * 3 * 2
    assert {r["seed"] for r in records if r["prompt"] == " The cat"} == {7}
    assert {r["seed"] for r in records if r["prompt"] == " It is"} == {8}, "each prompt its own seed"
    table = (out_dir / "samples.md").read_text().splitlines()
    assert len(table) == 2 + 12 and "T=1.5 top-p=0.9" in table[-2]
    for k in (1, 2):
        assert (out_dir / f"distribution-{k}.png").stat().st_size > 0
    # one setting is the old single-value command, with the same completion (the same seed)
    code, single, _ = run_main(capsys, "sample", "--checkpoint", ckpt, "--prompt", " It is", "--temperature", "1.5",
                               "--top-p", "0.9", "--max-new-tokens", "6", "--seed", "8", "--out-dir", root / "one")
    wanted = next(r for r in records if r["prompt"] == " It is" and r["setting"] == "T=1.5 top-p=0.9")
    assert single.strip() == f"' It is' -> It is{wanted['completion']}"


def test_compare_prints_both_models_and_eval_and_train_on_gpt2(tiny_run, tiny_gpt2_dir, capsys):
    root, ckpt, corpus = tiny_run
    gpt2 = ["--gpt2-dir", data_path("gpt2")]
    code, out, _ = run_main(capsys, "sample", "--checkpoint", ckpt, "--compare", tiny_gpt2_dir, *gpt2,
                            "--prompt", " The cat", "--max-new-tokens", "4", "--out-dir", root / "cmp")
    assert code == 0 and f"[{ckpt}]" in out and f"[{tiny_gpt2_dir}]" in out
    header = (root / "cmp" / "samples.md").read_text().splitlines()[0]
    assert str(ckpt) in header and str(tiny_gpt2_dir) in header
    code, out, _ = run_main(capsys, "eval", "--init-from", tiny_gpt2_dir, *gpt2, "--corpus", corpus, "--stride", "32",
                            "--cache-dir", root / "cache", "--out-dir", root / "eval")
    saved = json.loads((root / "eval" / "eval-valid.json").read_text())
    assert code == 0 and saved["stride"] == 32 and saved["ppl"] > 1000   # random weights: near 50257
    code, out, _ = run_main(capsys, "train", "--init-from", tiny_gpt2_dir, *gpt2, "--corpus", corpus,
                            "--block-size", "16", "--batch-size", "2", "--max-iters", "2", "--eval-interval", "2",
                            "--eval-batches", "1", "--no-progress", "--no-report", "--out-dir", root / "ft",
                            "--cache-dir", root / "cache")
    assert code == 0 and f"from {tiny_gpt2_dir}" in out
    saved = torch.load(root / "ft" / "best.pt", weights_only=True)
    assert saved["model_config"]["n_embd"] == 32 and saved["model_config"]["block_size"] == 16
    assert saved["train_config"]["learning_rate"] == 1e-4
    code, _, err = run_main(capsys, "sample", "--init-from", "no/such-model", "--out-dir", root / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: --init-from: ")


def test_eval_stride_on_a_checkpoint(tiny_run, capsys):
    root, ckpt, corpus = tiny_run
    results = {}
    for stride in (16, 4):
        code, out, _ = run_main(capsys, "eval", "--checkpoint", ckpt, "--corpus", corpus, "--stride", stride,
                                "--cache-dir", root / "cache", "--out-dir", root / f"eval{stride}")
        assert code == 0 and f"stride {stride}" in out
        results[stride] = json.loads((root / f"eval{stride}" / "eval-valid.json").read_text())
    assert results[16]["tokens"] == results[4]["tokens"]
    assert results[4]["loss"] != results[16]["loss"]
    code, _, err = run_main(capsys, "eval", "--checkpoint", ckpt, "--corpus", corpus, "--stride", "17",
                            "--cache-dir", root / "cache", "--out-dir", root / "x")
    assert code == 2 and "--stride 17" in err
