"""Choosing the next token from a model's logits: greedy, temperature, top-k, top-p (nucleus).

Every function works on a batch: logits has shape (B, V). Filters return new logits in which
the tokens they rule out are -inf, so softmax gives them probability exactly 0.
"""

from __future__ import annotations

import torch


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (exactly k, even with ties); the rest become -inf."""
    if k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {k}")
    k = min(k, logits.size(-1))
    keep = torch.topk(logits, k, dim=-1).indices                                 # (B, k)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, keep, logits.gather(-1, keep))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probabilities sum to >= p.

    A token is kept when the probability mass of the tokens ranked above it is still < p, so the
    most likely token is always kept, and a token that brings the sum to p is kept too.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    # TODO(sample-top-p): return logits with the tokens outside the nucleus set to -inf.
    #  1. sort each row in descending order (torch.sort) and take the softmax of the sorted row
    #  2. mass_before = cumulative sum (torch.cumsum) minus the token's own probability     (B, V)
    #  3. remove the sorted positions where mass_before >= p
    #  4. map the decision back to the original token order (scatter with the sort indices)
    ### BEGIN SOLUTION
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)         # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    remove_sorted = mass_before >= p
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))
    ### END SOLUTION


def next_token(logits: torch.Tensor, temperature: float = 1.0, do_sample: bool = False,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V); returns (B,) token ids.

    Greedy (argmax) when do_sample is False. Otherwise: divide by the temperature (below 1
    sharpens, above 1 flattens), keep the top-k, then the top-p nucleus, and sample from the
    softmax with `generator` (for reproducible samples).
    """
    if not do_sample:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(sampling_logits(logits, temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def sampling_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """The logits (B, V) that sampling draws from: divided by the temperature, then the top-k, then the
    top-p nucleus kept (the rest -inf). Their softmax is the distribution `next_token` samples."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature} (use do_sample=False for greedy)")
    logits = logits / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = filter_top_p(logits, top_p)
    return logits


def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             do_sample: bool = False, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The generation loop shared by every model: extend idx (B, T) by up to max_new_tokens tokens.

    The model provides two methods: new_cache(batch) -> an empty cache (KV cache for GPT, the
    recurrent state for the LSTM), and next_logits(idx, cache) -> logits (B, V) of the token after
    idx, which updates the cache (cache None: recompute from the tokens alone). With eos_id, rows
    that produced it keep producing it and the loop stops once every row has. The model runs in eval
    mode under inference_mode; its training mode is restored afterwards.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():   # like no_grad, with less bookkeeping per op
            cache = model.new_cache(idx.size(0)) if use_cache else None
            done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
            # every token goes into one buffer allocated up front (no torch.cat copying the context per step)
            out = torch.empty(idx.size(0), idx.size(1) + max_new_tokens, dtype=idx.dtype, device=idx.device)
            out[:, :idx.size(1)] = idx
            n = idx.size(1)                                                               # tokens so far
            for _ in range(max_new_tokens):
                logits = model.next_logits(out[:, :n], cache).float()                    # (B, V)
                nxt = next_token(logits, temperature, do_sample, top_k, top_p, generator)   # (B,)
                if eos_id is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                    done |= nxt == eos_id
                out[:, n] = nxt
                n += 1
                if eos_id is not None and bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return out[:, :n].clone()   # a normal tensor again (not an inference tensor), usable anywhere
