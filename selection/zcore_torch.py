"""The torch ZCore engine: the same method as the NumPy engine, on a torch device (GPU).

Not pure (it imports torch), so it lives beside the algorithms, not among them; pass
``engine=torch_engine(device)`` to :func:`.algorithms.zcore.zcore_scores`. It holds a
transposed copy of the embeddings on the device, scores draws in batches, and may resolve
exact ties at the ``redund_nn``-th neighbour differently from the NumPy engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TorchEngine", "torch_engine"]

#: Elements per (samples x rows) distance matrix on the torch path.
_TORCH_BATCH = 1 << 26


class TorchEngine:
    """Brute-force batches on a torch device: full distance rows and ``torch.topk``."""

    parallel = False  # one device: blocks run one after another

    def __init__(
        self, x: np.ndarray, order: np.ndarray, k_nn: int, redund_exp: int, device: str
    ) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        # Rows in tie-breaking order: the first minimum is the earliest row in it.
        self.columns = torch.from_numpy(x[order]).to(self.device).T.contiguous()
        self.k_nn, self.redund_exp = k_nn, redund_exp
        self.batch = max(1, _TORCH_BATCH // len(x))

    def partial_scores(self, dims: np.ndarray, points: np.ndarray) -> np.ndarray:
        torch, cols = self.torch, self.columns
        n_rows = cols.shape[1]
        total = torch.zeros(n_rows, dtype=torch.float64, device=self.device)
        for s in range(0, len(dims), self.batch):
            d = torch.from_numpy(dims[s : s + self.batch]).to(self.device)
            p = torch.from_numpy(points[s : s + self.batch]).to(self.device, cols.dtype)
            coords = cols[d]  # (batch, sample_dim, rows)
            dist = (coords[:, 0] - p[:, 0, None]).abs()
            for j in range(1, d.shape[1]):
                dist += (coords[:, j] - p[:, j, None]).abs()
            cover = dist.argmin(dim=1)  # first minimum on ties
            total.index_add_(0, cover, torch.ones_like(cover, dtype=torch.float64))
            if self.k_nn == 0:
                continue
            batch = torch.arange(len(d), device=self.device)
            centre = coords[batch, :, cover]
            dist = (coords[:, 0] - centre[:, 0, None]).abs()
            for j in range(1, d.shape[1]):
                dist += (coords[:, j] - centre[:, j, None]).abs()
            dist[batch, cover] = torch.inf
            near, rows = torch.topk(dist, self.k_nn, dim=1, largest=False, sorted=True)
            dup = near[:, 0] == 0
            if dup.any():
                index = torch.arange(n_rows, device=self.device)
                first = torch.where(dist[dup] == 0, index, n_rows).min(dim=1).values
                total.index_add_(0, first, -torch.ones_like(first, dtype=torch.float64))
            near, rows = near[~dup].double(), rows[~dup]
            weight = (near[:, :1] / near) ** self.redund_exp
            weight /= weight.sum(dim=1, keepdim=True)
            total.index_add_(0, rows.reshape(-1), -weight.reshape(-1))
        return total.cpu().numpy()


def torch_engine(
    device: str = "cuda",
) -> Callable[[np.ndarray, np.ndarray, int, int], TorchEngine]:
    """An engine factory for :func:`.algorithms.zcore.zcore_scores` running on ``device``.

    Examples
    --------
    >>> import numpy as np
    >>> from annoloop.selection.algorithms.zcore import ZCoreParams, zcore_scores
    >>> x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    >>> zcore_scores(x, ZCoreParams(n_sample=500), engine=torch_engine("cpu")).shape
    (100,)
    """

    def make(x: np.ndarray, order: np.ndarray, k_nn: int, redund_exp: int) -> TorchEngine:
        return TorchEngine(x, order, k_nn, redund_exp, device)

    return make
