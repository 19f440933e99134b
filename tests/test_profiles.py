"""The `auto` profile and its fit to the corpus: a short CPU run on a small corpus must not train for
dozens of epochs (issue 14: 24 epochs on the built-in text overfit, valid ppl 198 -> 412)."""

import numpy as np
import torch

import main
from app.profiles import AUTO_MAX_EPOCHS, auto_profile, fit_to_corpus, resolve_settings

CPU = dict(max_iters=600, eval_interval=300, warmup_iters=50, batch_size=32)


def test_small_corpus_caps_the_cpu_run_at_ten_epochs_with_early_stopping():
    # 100,000 tokens, block 128: (100,000 - 1) // 128 = 781 windows; 781 // 32 = 24 iterations an epoch
    assert AUTO_MAX_EPOCHS["cpu"] == 10.0
    out = fit_to_corpus(CPU, {}, "cpu", 100_000, 128)
    assert out["max_iters"] == 240, "10 epochs of 24 iterations"
    assert out["eval_interval"] == 24, "a shortened run evaluates every epoch"
    assert out["patience"] == 2, "and stops after two evaluations without a new best"
    assert out["warmup_iters"] == 24, "warm-up at most a tenth of the run"


def test_large_corpus_flags_and_gpu_keep_the_profile():
    assert fit_to_corpus(CPU, {}, "cpu", 10_000_000, 128) == CPU, "10 epochs of WikiText-2 are more than 600 iterations"
    assert fit_to_corpus(CPU, {"max_iters": 600}, "cpu", 100_000, 128) == CPU, "--max-iters given: keep it"
    assert fit_to_corpus(CPU, {"epochs": 24.0}, "cpu", 100_000, 128) == CPU, "--epochs given: keep it"
    assert fit_to_corpus(CPU, {}, "cuda", 100_000, 128) == CPU, "the GPU profile stops early instead"
    kept = fit_to_corpus(dict(CPU, patience=5), {"eval_interval": 10, "warmup_iters": 20, "patience": 5}, "cpu",
                         100_000, 128)
    assert (kept["max_iters"], kept["eval_interval"], kept["warmup_iters"], kept["patience"]) == (240, 300, 50, 5), \
        "chosen --eval-interval / --warmup-iters / --patience are not changed"


def test_setup_run_applies_the_cap_to_the_training_split():
    args = main.build_parser().parse_args(["train", "--corpus", "builtin", "--device", "cpu"])
    block = auto_profile("cpu")["block_size"]
    batch = auto_profile("cpu")["batch_size"]
    ids = {"train": np.zeros(block * batch * 10 + 1, dtype=np.uint16)}   # 10 iterations an epoch
    _, _, tcfg = main.setup_run(args, torch.device("cpu"), ids, vocab_size=256)
    assert (tcfg.max_iters, tcfg.eval_interval, tcfg.patience) == (100, 10, 2)
    args = main.build_parser().parse_args(["train", "--corpus", "builtin", "--device", "cpu", "--max-iters", "500"])
    assert main.setup_run(args, torch.device("cpu"), ids, vocab_size=256)[2].max_iters == 500


def test_explicit_values_beat_the_profile():
    model, train = resolve_settings({"n_layer": 2, "learning_rate": 5e-4}, "cpu")
    assert model["n_layer"] == 2 and train["learning_rate"] == 5e-4
    assert model["n_embd"] == auto_profile("cpu")["n_embd"] and train["max_iters"] == auto_profile("cpu")["max_iters"]


def test_run_spec_is_the_one_settings_step():
    """Arguments + device + training-split size -> (kind, model config, TrainConfig), nothing else needed."""
    from app.profiles import FINE_TUNE_LR, run_spec
    from gpt.lstm import LSTMConfig
    from gpt.model import GPTConfig
    args = main.build_parser().parse_args(["train", "--model", "lstm", "--device", "cpu", "--epochs", "2",
                                           "--batch-size", "4", "--block-size", "8", "--out-dir", "somewhere"])
    spec = run_spec(vars(args), torch.device("cpu"), 8 * 4 * 5 + 1, vocab_size=300)
    assert spec.kind == "lstm" and isinstance(spec.model, LSTMConfig) and spec.model.vocab_size == 300
    assert spec.train.max_iters == 10, "2 epochs of 5 batches of 4 windows of 8 tokens"
    assert (spec.train.device, spec.train.out_dir, spec.train.resume) == ("cpu", "somewhere", False)
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=2, n_head=2, n_embd=8, dropout=0.1)
    args = main.build_parser().parse_args(["train", "--device", "cpu", "--block-size", "32", "--max-iters", "3"])
    spec = run_spec(vars(args), torch.device("cpu"), 10_000, vocab_size=50257, pretrained=gpt2)
    assert (spec.model.block_size, spec.model.n_layer, spec.model.dropout) == (32, 2, 0.0), \
        "--init-from keeps the pretrained architecture, with the flag's context and the profile's dropout"
    assert spec.train.learning_rate == FINE_TUNE_LR and spec.train.max_iters == 3
