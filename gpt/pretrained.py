"""GPT-2's pretrained weights in our GPT: `load_gpt2("gpt2")` or `load_gpt2("path/saved/with/save_pretrained")`.

The weights come through `transformers` (GPT2LMHeadModel.from_pretrained: the Hugging Face cache, a
download, or a local folder), and are copied into our GPT by GPT.from_hf_gpt2 (the names match; the
Conv1D matrices are transposed). Our architecture is GPT-2's, so the logits are the same. The
tokenizer is GPT-2's, read by our own BPETokenizer.from_gpt2 from its two files.

`transformers` is needed only here, and imported on first use: without it the rest of the kit works.
Every problem (no transformers, a model neither cached nor downloadable, a folder without tokenizer
files) is a PretrainedError with a one-line message that says what to do.
"""

from __future__ import annotations

import os
from dataclasses import replace

from gpt.bpe import BPETokenizer
from gpt.model import GPT, GPTConfig
from gpt.utils import network_available

GPT2_MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")   # on the Hugging Face hub
# GPT-2's tokenizer as OpenAI released it, and as transformers' save_pretrained writes it (same content).
TOKENIZER_FILES = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))


class PretrainedError(ValueError):
    """A pretrained model or its tokenizer cannot be had."""


def load_gpt2(source: str, tokenizer_dir: str | None = None, dropout: float = 0.0) -> tuple[GPT, BPETokenizer]:
    """(our GPT holding the weights of `source`, GPT-2's tokenizer); the model is on the CPU in eval mode.

    source: a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or another GPT-2 repository id) or a
    folder written by GPT2LMHeadModel.save_pretrained. tokenizer_dir: where encoder.json and vocab.bpe
    are; default: the model's folder, else the hub's copy next to the weights.
    """
    hf = _hf_model(source)
    model = GPT.from_hf_gpt2(hf.state_dict(), gpt2_config(hf.config, dropout))
    tok = gpt2_tokenizer(source, tokenizer_dir)
    if tok.vocab_size != model.config.vocab_size:
        raise PretrainedError(f"{source} has a vocabulary of {model.config.vocab_size} tokens but the GPT-2 "
                              f"tokenizer has {tok.vocab_size}: it is not a GPT-2 vocabulary model")
    return model.eval(), tok


def with_block_size(model: GPT, block_size: int, dropout: float | None = None) -> GPT:
    """The same weights with a shorter context (the first block_size position embeddings) and, if given,
    another dropout: for fine-tuning GPT-2 (1024 positions) on short windows."""
    cfg = model.config
    if block_size > cfg.block_size:
        raise ValueError(f"--block-size {block_size} is longer than the pretrained model's context ({cfg.block_size})")
    new_cfg = replace(cfg, block_size=block_size, dropout=cfg.dropout if dropout is None else dropout)
    if new_cfg == cfg:
        return model
    out = GPT(new_cfg)
    sd = model.state_dict()
    sd["transformer.wpe.weight"] = sd["transformer.wpe.weight"][:block_size]
    out.load_state_dict(sd)
    return out


def gpt2_config(hf_config, dropout: float = 0.0) -> GPTConfig:
    """Our GPTConfig for a transformers GPT2Config; variants our GPT does not implement are refused."""
    c = hf_config
    unsupported = {"activation_function": (c.activation_function, ("gelu_new", "gelu_pytorch_tanh")),
                   "layer_norm_epsilon": (c.layer_norm_epsilon, (1e-5,)),
                   "n_inner": (c.n_inner, (None, 4 * c.n_embd)),
                   "scale_attn_weights": (c.scale_attn_weights, (True,)),
                   "scale_attn_by_inverse_layer_idx": (c.scale_attn_by_inverse_layer_idx, (False,))}
    for name, (value, ok) in unsupported.items():
        if value not in ok:
            raise PretrainedError(f"this GPT-2 variant has {name}={value!r}; our GPT implements {ok[0]!r} only")
    return GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                     n_embd=c.n_embd, dropout=dropout, bias=True, tie_weights=c.tie_word_embeddings)


def gpt2_tokenizer(source: str, tokenizer_dir: str | None = None) -> BPETokenizer:
    """GPT-2's tokenizer from tokenizer_dir, else from the model folder `source`, else from the hub."""
    for folder in (tokenizer_dir, source if os.path.isdir(source) else None):
        if folder is None:
            continue
        for names in TOKENIZER_FILES:
            paths = [os.path.join(folder, n) for n in names]
            if all(os.path.isfile(p) for p in paths):
                return BPETokenizer.from_gpt2(*paths)
        if folder == tokenizer_dir:
            raise PretrainedError(f"--gpt2-dir {folder} holds neither encoder.json + vocab.bpe nor "
                                  "vocab.json + merges.txt")
    if not os.path.isdir(source):
        return BPETokenizer.from_gpt2(*_hub_files(source, TOKENIZER_FILES[1]))
    raise PretrainedError(f"{source} holds no GPT-2 tokenizer files (encoder.json and vocab.bpe); "
                          "pass --gpt2-dir DIR holding them")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise PretrainedError("loading GPT-2 weights needs transformers: pip install transformers") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()   # no "Loading weights" bars on stderr
    return transformers


def _hf_model(source: str):
    """transformers' GPT2LMHeadModel from a folder, the local cache, or (when online) a download."""
    transformers = _transformers()
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise PretrainedError(f"{source} is not a folder written by save_pretrained (no config.json)")
        return _from_pretrained(transformers, source, source)
    try:   # the cache first: no network needed, and no retries when there is none
        return transformers.GPT2LMHeadModel.from_pretrained(source, local_files_only=True).float()
    except OSError:
        pass
    if not network_available():
        raise PretrainedError(f"{source} is neither a folder nor in the Hugging Face cache, and there is no network "
                              f"to download it; download it once online, or give a folder saved with save_pretrained")
    return _from_pretrained(transformers, source, source)


def _from_pretrained(transformers, where: str, name: str):
    try:
        return transformers.GPT2LMHeadModel.from_pretrained(where).float()
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PretrainedError(f"cannot load {name} with transformers: {first[:200]}") from None


def _hub_files(repo: str, names: tuple[str, ...]) -> list[str]:
    """Paths of files of a hub repository, from the cache (or a download when online)."""
    _transformers()
    from huggingface_hub import hf_hub_download
    try:
        return [hf_hub_download(repo, n, local_files_only=not network_available()) for n in names]
    except Exception as e:   # huggingface_hub raises several kinds of error for a missing file
        raise PretrainedError(f"cannot find GPT-2's tokenizer files for {repo} ({type(e).__name__}); "
                              "pass --gpt2-dir DIR holding encoder.json and vocab.bpe") from None
