"""Token-id streams -> windows -> batches: what the trainer and the evaluation read.

A split is one stream of token ids. Training cuts it into windows of block_size + 1 tokens and takes
random batches of them (WindowBatches); evaluation walks the whole stream once (eval_windows), in
non-overlapping windows or, with a smaller stride, overlapping ones that give every token more context.
"""

from __future__ import annotations

import numpy as np
import torch


class WindowBatches:
    """Training batches: the stream cut into windows of block_size + 1 tokens (stride block_size),
    x = window[:-1], y = window[1:], shuffled once per epoch. batch_size is the global batch; under
    torchrun each of the world_size processes gets rows [rank * local, (rank + 1) * local) of it.

    Batch `step` is a pure function of (seed, step): epoch e uses the permutation drawn from a
    generator seeded with seed + e, so resuming at any step gives exactly the same data.
    """

    def __init__(self, ids: np.ndarray, block_size: int, batch_size: int, seed: int = 0,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"the global batch ({batch_size}) must divide evenly over {world_size} processes")
        self.ids, self.block_size, self.batch_size, self.seed = ids, block_size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.n_windows = (len(ids) - 1) // block_size
        if self.n_windows < batch_size:
            raise ValueError(f"the training split has {len(ids)} tokens: too few for batch_size={batch_size} "
                             f"windows of block_size={block_size}")
        self.batches_per_epoch = self.n_windows // batch_size   # the last incomplete batch is dropped
        self._epoch, self._order = -1, None

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.n_windows, generator=g).numpy()
        starts = self._order[k * self.batch_size:(k + 1) * self.batch_size] * self.block_size
        local = self.batch_size // self.world_size              # this process' slice of the global batch
        starts = starts[self.rank * local:(self.rank + 1) * local]
        L = self.block_size + 1
        windows = torch.from_numpy(np.stack([self.ids[s:s + L] for s in starts]).astype(np.int64))  # (B, T+1)
        if self.device.type == "cuda":
            windows = windows.pin_memory().to(self.device, non_blocking=True)
        else:
            windows = windows.to(self.device)
        return windows[:, :-1], windows[:, 1:]


def eval_windows(ids: np.ndarray, block_size: int, batch_size: int, stride: int | None = None):
    """Walk the whole stream once, predicting each token exactly once.

    Windows of up to block_size tokens start at 0, stride, 2*stride, ... Each window scores (mask 1)
    only the targets no earlier window scored: all of the first window, the last `stride` positions
    of the next ones. With stride = block_size (the default) the windows do not overlap and a token
    has 0..block_size-1 tokens of context; a smaller stride gives every scored token at least
    block_size - stride of context (stride 1: exactly block_size - 1 once past the start), at the
    cost of block_size / stride times more computation (the Hugging Face perplexity guide's method).
    The last window may be shorter; it is padded and its padding masked out.

    Yields (x, y, mask), each (B, block_size), mask 1 where y is a real next token scored here.
    """
    stride = block_size if stride is None else stride
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and block_size={block_size}, got {stride}")
    windows = list(_strided(len(ids) - 1, block_size, stride))
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        x = np.zeros((len(chunk), block_size), dtype=np.int64)
        y = np.zeros((len(chunk), block_size), dtype=np.int64)
        m = np.zeros((len(chunk), block_size), dtype=np.float32)
        for r, (s, n, first) in enumerate(chunk):
            x[r, :n] = ids[s:s + n]
            y[r, :n] = ids[s + 1:s + n + 1]
            m[r, first:n] = 1.0
        yield torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


def _strided(n_pred: int, block_size: int, stride: int):
    """(start, length, first scored position) of each window over n_pred predictions."""
    scored = 0                                  # predictions 0..scored-1 are already counted
    for s in range(0, n_pred, stride):
        n = min(block_size, n_pred - s)         # this window predicts targets s..s+n-1
        yield s, n, scored - s
        scored = s + n
        if scored == n_pred:
            break
