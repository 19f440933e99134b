"""Model tests: exact parameter counts, attention against PyTorch's fused kernel, logits against
transformers' GPT-2, the padding mask, and generation (KV cache, top-k, top-p, eos)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from gpt.model import GPT, GPTConfig, CausalSelfAttention, count_parameters, flops_per_token, PRESETS
from gpt.sampling import filter_top_k, filter_top_p, next_token


def small_config(**kw) -> GPTConfig:
    base = dict(vocab_size=101, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return GPTConfig(**{**base, **kw})


# -- configuration and parameter counts --------------------------------------------------

def test_count_parameters_gpt2_small_and_gpt3():
    assert count_parameters(GPTConfig.preset("gpt2")) == 124_439_808
    gpt3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
    assert count_parameters(gpt3) == 174_604_259_328
    assert count_parameters(GPTConfig.preset("gpt3")) == 174_604_259_328


def test_attention_block_has_4_h2_plus_h_parameters():
    attn = CausalSelfAttention(GPTConfig(vocab_size=1, block_size=8, n_layer=1, n_head=12, n_embd=768))
    assert sum(p.numel() for p in attn.parameters()) == 4 * (768 ** 2 + 768) == 2_362_368


@pytest.mark.parametrize("name", ["gpt-nano", "gpt-micro", "gpt-mini", "gopher-44m"])
@pytest.mark.parametrize("bias,tie", [(True, True), (False, False)])
def test_count_parameters_equals_built_model(name, bias, tie):
    cfg = GPTConfig.preset(name, vocab_size=1000, block_size=64, bias=bias, tie_weights=tie)
    model = GPT(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    embeddings = cfg.vocab_size * cfg.n_embd * (1 if tie else 2) + cfg.block_size * cfg.n_embd
    assert count_parameters(cfg, non_embedding=True) == count_parameters(cfg) - embeddings


def test_flops_per_token_gpt2_by_hand():
    # N = 124,439,808 parameters - 1024 x 768 position table = 123,653,376; 6N = 741,920,256;
    # 12 * L * H * Q * T = 12 * 12 * 12 * 64 * 1024 = 113,246,208.
    assert flops_per_token(GPTConfig.preset("gpt2")) == 741_920_256 + 113_246_208
    # At context 256 only the attention term shrinks (to a quarter).
    assert flops_per_token(GPTConfig.preset("gpt2"), seq_len=256) == 741_920_256 + 113_246_208 // 4


@pytest.mark.parametrize("tie", [True, False])
def test_flops_per_token_equals_pytorchs_count_of_a_training_step(tie):
    """FlopCounterMode counts every matmul of a real forward + backward. The formula's 6N also
    charges the biases and LayerNorm gains (which do elementwise work, not matmuls): take them off."""
    from torch.utils.flop_counter import FlopCounterMode
    cfg = small_config(tie_weights=tie, attn_impl="manual")
    model = GPT(cfg)
    B, T = 3, 16
    x = torch.randint(0, cfg.vocab_size, (B, T))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    not_matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 1)
    expected = (flops_per_token(cfg, seq_len=T) - 6 * not_matmul) * B * T
    assert counter.get_total_flops() == expected


def test_gpt3_preset_is_counted_without_allocating():
    cfg = GPTConfig.preset("gpt3")   # building this model would need ~700 GB
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (96, 96, 12288, 2048)


@pytest.mark.parametrize("kwargs,field", [
    (dict(n_embd=30, n_head=4), "n_embd"), (dict(n_layer=0), "n_layer"), (dict(vocab_size=-1), "vocab_size"),
    (dict(block_size=2.5), "block_size"), (dict(attn_impl="flash"), "attn_impl"), (dict(dropout=1.0), "dropout"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        small_config(**kwargs)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="gpt-nano"):
        GPTConfig.preset("gpt-huge")
    assert set(PRESETS) >= {"gpt-nano", "gpt-micro", "gpt-mini", "gopher-44m", "gpt2", "gpt2-medium",
                            "gpt2-large", "gpt2-xl", "gpt3"}


# -- attention -------------------------------------------------------------------------

def test_causal_mask_buffer():
    attn = CausalSelfAttention(small_config(block_size=5))
    assert attn.causal_mask.shape == (1, 1, 5, 5)
    assert torch.equal(attn.causal_mask[0, 0] != 0, torch.tril(torch.ones(5, 5, dtype=torch.bool)))


@pytest.mark.parametrize("T", [1, 2, 7, 31, 32])
def test_manual_attention_matches_sdpa_and_a_by_hand_reference(T):
    torch.manual_seed(T)
    cfg = small_config()
    manual = CausalSelfAttention(cfg)
    fused = CausalSelfAttention(dataclasses.replace(cfg, attn_impl="sdpa"))
    fused.load_state_dict(manual.state_dict())
    x = torch.randn(3, T, cfg.n_embd)
    y = manual(x)
    assert torch.allclose(y, fused(x), atol=1e-5, rtol=0)
    # by hand, one head at a time, one query at a time
    q, k, v = manual.c_attn(x).split(cfg.n_embd, dim=2)
    hs = cfg.n_embd // cfg.n_head
    heads = []
    for h in range(cfg.n_head):
        sl = slice(h * hs, (h + 1) * hs)
        rows = []
        for t in range(T):   # query t sees keys 0..t
            scores = torch.einsum("bd,bsd->bs", q[:, t, sl], k[:, : t + 1, sl]) / math.sqrt(hs)   # (B, t+1)
            w = torch.softmax(scores, dim=-1)
            rows.append(torch.einsum("bs,bsd->bd", w, v[:, : t + 1, sl]))                     # (B, hs)
        heads.append(torch.stack(rows, 1))
    expected = manual.c_proj(torch.cat(heads, dim=-1))
    assert torch.allclose(y, expected, atol=1e-5, rtol=0)


def test_attention_does_not_look_at_the_future():
    torch.manual_seed(0)
    model = GPT(small_config()).eval()
    x = torch.randint(0, 101, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 101, (2, 8))     # change only the future of position 11
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_whole_model_manual_equals_sdpa():
    torch.manual_seed(1)
    m1 = GPT(small_config()).eval()
    m2 = GPT(small_config(attn_impl="sdpa")).eval()
    m2.load_state_dict(m1.state_dict())
    x = torch.randint(0, 101, (4, 32))
    assert torch.allclose(m1(x)[0], m2(x)[0], atol=1e-5, rtol=0)


# -- GPT-2 weights from transformers --------------------------------------------------------

@pytest.mark.parametrize("tie", [True, False])
def test_logits_match_transformers_gpt2(tie):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf_cfg = GPT2Config(vocab_size=503, n_positions=48, n_embd=64, n_layer=3, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=tie,
                        bos_token_id=0, eos_token_id=0)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    if not tie:   # make the untied head differ from the embedding, so a wrong tie shows up
        torch.nn.init.normal_(hf.lm_head.weight, std=0.02)
    cfg = GPTConfig(vocab_size=503, block_size=48, n_layer=3, n_head=4, n_embd=64, dropout=0.0, tie_weights=tie)
    ours = GPT.from_hf_gpt2(hf.state_dict(), cfg).eval()
    x = torch.randint(0, 503, (2, 48))
    with torch.no_grad():
        expected = hf(x).logits
        logits, loss = ours(x, targets=x)
        expected_loss = hf(x, labels=x).loss   # transformers shifts labels itself: compare on shifted
    assert torch.allclose(logits, expected, atol=1e-4, rtol=0)
    shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 503), x[:, 1:].reshape(-1))
    assert torch.allclose(shifted, expected_loss, atol=1e-5)


def test_from_hf_gpt2_rejects_a_mismatched_config():
    from transformers import GPT2Config, GPT2LMHeadModel
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                    bos_token_id=0, eos_token_id=0))
    with pytest.raises(ValueError, match="wpe|shape|missing"):
        GPT.from_hf_gpt2(hf.state_dict(), GPTConfig(50, 32, 2, 2, 32))


# -- loss and mask ----------------------------------------------------------------------

def test_loss_is_mean_cross_entropy_and_mask_excludes_padding():
    torch.manual_seed(0)
    model = GPT(small_config()).eval()
    x = torch.randint(0, 101, (2, 10))
    y = torch.randint(0, 101, (2, 10))
    logits, loss = model(x, y)
    nll = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).squeeze(-1)     # (B, T)
    assert torch.allclose(loss, nll.mean(), atol=1e-6)
    mask = torch.ones(2, 10)
    mask[0, 6:] = 0
    mask[1, 3:] = 0
    _, masked = model(x, y, mask)
    assert torch.allclose(masked, nll[mask.bool()].mean(), atol=1e-6)
    # padding positions may hold anything
    y2 = y.clone()
    y2[mask == 0] = 0
    assert torch.allclose(model(x, y2, mask)[1], masked, atol=1e-6)


def test_initial_loss_is_near_log_vocab():
    torch.manual_seed(0)
    model = GPT(small_config(vocab_size=1000))
    x = torch.randint(0, 1000, (8, 32))
    _, loss = model(x, torch.randint(0, 1000, (8, 32)))
    assert abs(loss.item() - math.log(1000)) < 0.1


# -- generation ----------------------------------------------------------------------

@pytest.mark.parametrize("attn_impl", ["manual", "sdpa"])
@pytest.mark.parametrize("prompt_len,new", [(1, 20), (5, 27), (5, 60), (40, 10)])
def test_kv_cache_gives_exactly_the_tokens_of_recomputation(attn_impl, prompt_len, new):
    # (5, 60) and (40, 10) run past block_size=32: the context is cropped from the left.
    torch.manual_seed(0)
    model = GPT(small_config(attn_impl=attn_impl))
    prompt = torch.randint(0, 101, (3, prompt_len))
    cached = model.generate(prompt, new, use_cache=True)
    recomputed = model.generate(prompt, new, use_cache=False)
    assert cached.shape == (3, prompt_len + new)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached[:, :prompt_len], prompt)


def test_greedy_step_is_the_argmax_of_forward():
    torch.manual_seed(0)
    model = GPT(small_config()).eval()
    prompt = torch.randint(0, 101, (2, 7))
    out = model.generate(prompt, 1)
    assert torch.equal(out[:, -1], model(prompt)[0][:, -1].argmax(-1))


def test_generate_restores_training_mode_and_returns_a_normal_tensor():
    model = GPT(small_config(dropout=0.1))
    model.train()
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 3)
    assert model.training and not out.is_inference()
    _, loss = model(out[:, :-1], out[:, 1:])   # generated ids can be trained on
    loss.backward()


def test_sampling_is_reproducible_with_a_generator():
    torch.manual_seed(0)
    model = GPT(small_config())
    p = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(p, 15, do_sample=True, generator=torch.Generator().manual_seed(7))
    b = model.generate(p, 15, do_sample=True, generator=torch.Generator().manual_seed(7))
    c = model.generate(p, 15, do_sample=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eos_stops_generation_and_pads_finished_rows():
    torch.manual_seed(0)
    model = GPT(small_config())
    prompt = torch.randint(0, 101, (1, 4))
    greedy = model.generate(prompt, 10)
    eos = int(greedy[0, 6])                  # the 3rd generated token
    out = model.generate(prompt, 10, eos_id=eos)
    first = (greedy[0, 4:] == eos).nonzero()[0].item() + 4
    assert out.shape[1] == first + 1 and int(out[0, -1]) == eos


def test_top_k_filter_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 5.0, 2.0, 4.0]])
    kept = filter_top_k(logits, 3)
    assert torch.isfinite(kept).sum() == 3
    assert set(torch.isfinite(kept)[0].nonzero().flatten().tolist()) == {1, 3, 5}
    assert torch.equal(kept[torch.isfinite(kept)], torch.tensor([5.0, 5.0, 4.0]))


def test_top_p_filter_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    keep = lambda p: set(torch.isfinite(filter_top_p(logits, p))[0].nonzero().flatten().tolist())
    assert keep(0.5) == {1}              # 0.5 alone reaches 0.5
    assert keep(0.51) == {1, 2}          # needs 0.8
    assert keep(0.8) == {1, 2}
    assert keep(0.81) == {1, 2, 3}       # needs 0.95
    assert keep(0.96) == {0, 1, 2, 3}
    assert keep(1e-6) == {1}             # the most likely token always survives
    with pytest.raises(ValueError, match="top_p"):
        filter_top_p(logits, 0.0)


def test_sampling_never_leaves_top_k_or_top_p():
    torch.manual_seed(0)
    logits = torch.randn(4, 200)
    g = torch.Generator().manual_seed(0)
    topk_sets = torch.topk(logits, 5).indices
    for _ in range(200):
        t = next_token(logits, temperature=2.0, do_sample=True, top_k=5, generator=g)
        assert (topk_sets == t[:, None]).any(-1).all()
    probs = torch.softmax(logits, -1)
    for _ in range(200):
        t = next_token(logits, do_sample=True, top_p=0.3, generator=g)
        p_t = probs.gather(-1, t[:, None])
        mass_above = (probs * (probs > p_t)).sum(-1, keepdim=True)
        assert (mass_above < 0.3).all()


def test_temperature_sharpens_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    cold = [int(next_token(logits, 0.1, True, generator=g)) for _ in range(300)]
    hot = [int(next_token(logits, 10.0, True, generator=g)) for _ in range(300)]
    assert cold.count(0) > 295 and hot.count(0) < 150
    with pytest.raises(ValueError, match="temperature"):
        next_token(logits, 0.0, True)


@pytest.mark.parametrize("attn", ["manual", "sdpa"])
def test_forward_with_loss_compiles_to_one_graph(attn):
    """torch.compile (used by --fast) sees the whole forward + loss as one graph: a graph break would
    split the fused kernels and drop back to Python in the middle of every step."""
    model = GPT(small_config(attn_impl=attn))
    x = torch.randint(0, 101, (2, 16))
    explained = torch._dynamo.explain(model)(x, x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_hand_written_backward_passes_pass_gradcheck():
    """LayerNorm, gelu and lm_loss have written-out backward passes (autograd.Function): check them
    against finite differences in float64, with and without bias / mask."""
    from gpt.kernels import CrossEntropyFunction
    from gpt.model import LayerNorm, gelu
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    for bias in (True, False):
        ln = LayerNorm(6, bias=bias).double()
        with torch.no_grad():
            ln.weight.add_(torch.randn(6, generator=g, dtype=torch.float64))
        params = [x, ln.weight] + ([ln.bias] if bias else [])
        assert torch.autograd.gradcheck(lambda *p: ln(p[0]), params)
    assert torch.autograd.gradcheck(gelu, (torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True) * 3,))
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)   # lm_loss's (N, V), float64
    targets = torch.randint(0, 5, (6,), generator=g)
    for m in (None, torch.tensor([1, 1, 0, 1, 0, 0])):
        assert torch.autograd.gradcheck(lambda t: CrossEntropyFunction.apply(t, targets, m), (logits,))


def test_layer_norm_computes_low_precision_inputs_in_fp32():
    """bf16 activations (autocast) are normalised in fp32, as nn.LayerNorm does: a bf16 mean and variance
    of values around 5 with spread 3 would be off by several bf16 steps; ours is the fp32 result rounded once
    to bf16, its saved activation stays bf16 (the memory estimate counts bf16), gradients flow back in bf16
    and the weight's gradient is fp32. GELU instead runs in the input's dtype: its temporaries in fp32 would
    raise the backward pass's peak memory, and its bf16 result stays within 0.02 of the fp32 one."""
    from gpt.model import LayerNorm, gelu
    torch.manual_seed(0)
    x = (torch.randn(64, 128) * 3 + 5).bfloat16().requires_grad_()
    ln = LayerNorm(128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ln(x)
    want = F.layer_norm(x.detach().float(), (128,)).bfloat16().float()
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want, rtol=2 ** -8, atol=2 ** -8), "within one bf16 rounding of fp32"
    got.float().pow(2).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and ln.weight.grad.dtype == torch.float32
    assert ln.half()(x.detach().half()).dtype == torch.float16
    g = gelu(x.detach())
    assert g.dtype == torch.bfloat16
    assert (g.float() - F.gelu(x.detach().float(), approximate="tanh")).abs().max() < 0.02


# -- speed paths (issue 14): they must compute what the written-out code computes --------------------------

def test_cross_entropy_in_blocks_of_rows_matches_pytorch():
    """lm_loss takes logsumexp over blocks of 2**22 // V rows: at V = 2**20 that is 4 rows, so 10 rows make
    blocks of 4, 4 and 2 (a block dropped or counted twice changes the loss)."""
    from gpt.model import lm_loss
    torch.manual_seed(0)
    logits = torch.randn(1, 10, 2**20, requires_grad=True)
    targets = torch.randint(0, 2**20, (1, 10))
    loss = lm_loss(logits, targets)
    loss.backward()
    ref_logits = logits.detach().clone().requires_grad_()
    ref = F.cross_entropy(ref_logits[0], targets[0])
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5), (loss.item(), ref.item())
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-9)


def test_fused_inference_only_in_generation_without_gradients(monkeypatch):
    """Generation steps use F.layer_norm and F.gelu; everywhere else (tests of the written-out LayerNorm
    and GELU under no_grad included) the written-out versions run, and with gradients they always do."""
    from gpt.model import LayerNorm, fused_inference, gelu
    ln, x = LayerNorm(8), torch.randn(3, 8)
    with fused_inference():
        y = ln(x.requires_grad_())
        assert type(y.grad_fn).__name__ == "LayerNormFunctionBackward", "with gradients: the written-out version"
        with torch.no_grad():
            fused = ln(x), gelu(x)
    def refuse(*a, **k):
        raise AssertionError("a fused kernel ran outside generation")
    monkeypatch.setattr(F, "layer_norm", refuse)
    monkeypatch.setattr(F, "gelu", refuse)
    with torch.no_grad():
        written = ln(x), gelu(x)
    for a, b in zip(fused, written):
        assert torch.allclose(a, b, atol=1e-5)


def test_generation_steps_run_fused_and_match_the_written_out_model(monkeypatch):
    """next_logits under fused_inference gives the logits of the written-out forward pass."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).eval()
    idx = torch.randint(0, 50, (2, 7))
    calls = []
    real = F.layer_norm
    monkeypatch.setattr(F, "layer_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        fused = model.next_logits(idx)
        monkeypatch.setattr(F, "layer_norm", real)
        written = model(idx)[0][:, -1]
    assert len(calls) == 2 * 2 + 1, "every LayerNorm of a generation step is the fused kernel"
    assert torch.allclose(fused, written, atol=1e-5)


def test_keep_freed_memory_is_set_on_linux():
    import sys
    from gpt.utils import keep_freed_memory
    assert keep_freed_memory() is sys.platform.startswith("linux"), "glibc's mallopt refused a setting"
