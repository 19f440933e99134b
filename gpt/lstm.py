"""An LSTM language model with GPT's interface: the baseline for the model-comparison experiments.

    embedding (V -> n_embd) -> dropout -> n_layer LSTM (hidden n_hidden) -> dropout -> linear (n_hidden -> V)

`forward(idx, targets, mask) -> (logits, loss)` and `generate(...)` match gpt.model.GPT, so the
trainer, evaluation and sampling work unchanged. block_size is the training window length and the
longest context used when generating (for a like-for-like comparison with GPT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from gpt.model import lm_loss
from gpt.sampling import generate
from gpt.sizing import check_sizes


@dataclass
class LSTMConfig:
    vocab_size: int
    block_size: int
    n_layer: int = 1
    n_embd: int = 512
    n_hidden: int = 512
    dropout: float = 0.1
    tie_weights: bool = False   # share the embedding with the output layer (needs n_embd == n_hidden)

    def __post_init__(self):
        check_sizes(self, ("vocab_size", "block_size", "n_layer", "n_embd", "n_hidden"))
        if self.tie_weights and self.n_embd != self.n_hidden:
            raise ValueError(f"LSTMConfig.tie_weights needs n_embd == n_hidden, got {self.n_embd} and {self.n_hidden}")


def count_lstm_parameters(cfg: LSTMConfig) -> int:
    """Embedding V*E; each LSTM layer 4 gates x (input->hidden + hidden->hidden + two biases);
    output layer H*V + V (its weight shared with the embedding when tied)."""
    E, H, V = cfg.n_embd, cfg.n_hidden, cfg.vocab_size
    lstm = sum(4 * H * ((E if layer == 0 else H) + H + 2) for layer in range(cfg.n_layer))
    return V * E + lstm + (0 if cfg.tie_weights else H * V) + V


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.n_embd, config.n_hidden, num_layers=config.n_layer, batch_first=True,
                            dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.head = nn.Linear(config.n_hidden, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def run(self, idx: torch.Tensor, state=None):
        """idx (B, T) -> logits (B, T, V) and the final (h, c) state, each (n_layer, B, n_hidden)."""
        # TODO(lstm-forward): embed idx (B, T) -> (B, T, n_embd), apply self.drop, run self.lstm
        # from `state` (None means zeros) -> outputs (B, T, n_hidden) and the new state, apply
        # self.drop to the outputs, and map them to logits with self.head -> (B, T, V).
        ### BEGIN SOLUTION
        x = self.drop(self.embedding(idx))             # (B, T, E)
        out, state = self.lstm(x, state)               # (B, T, H)
        logits = self.head(self.drop(out))             # (B, T, V)
        ### END SOLUTION
        return logits, state

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        logits, _ = self.run(idx)
        loss = lm_loss(logits, targets, mask) if targets is not None else None
        return logits, loss

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 do_sample: bool = False, top_k: int | None = None, top_p: float | None = None,
                 eos_id: int | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """As GPT.generate. The "cache" is the LSTM state: each step feeds only the newest token.
        Like GPT, the context is the last block_size tokens, so once it is longer the state is
        rebuilt from the cropped context at every step (use_cache=False always rebuilds)."""
        return generate(self, idx, max_new_tokens, temperature, do_sample, top_k, top_p, eos_id, use_cache,
                        generator)

    def new_cache(self, batch: int) -> "LSTMState":
        return LSTMState()

    def next_logits(self, idx: torch.Tensor, cache: "LSTMState | None" = None) -> torch.Tensor:
        """Logits (B, V) of the token after idx (B, T); with a state, feed only the tokens it has not seen."""
        if cache is None or cache.state is None or idx.size(1) > self.config.block_size:
            logits, state = self.run(idx[:, -self.config.block_size:])
        else:
            logits, state = self.run(idx[:, cache.seen:], cache.state)
        if cache is not None:
            cache.state, cache.seen = state, idx.size(1)
        return logits[:, -1, :]


@dataclass
class LSTMState:
    """The "cache" of an LSTM in generation: its (h, c) state after the first `seen` tokens."""
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    seen: int = 0
