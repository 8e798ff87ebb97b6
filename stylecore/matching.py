"""Nearest-neighbour search of the local loss: which style patch each synthesis patch matches."""

from __future__ import annotations

import torch


def normalize_patches(patches: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows divided by their L2 norm, so a dot product is the normalised cross-correlation (Eq. 5)."""
    return patches / patches.norm(dim=1, keepdim=True).clamp_min(eps)


@torch.no_grad()
def nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor,
                    budget_bytes: int = 256 * 2**20) -> torch.Tensor:
    """Index of the bank row with the highest normalised cross-correlation, per query row (Eq. 5).

    `queries` (P, D) need not be normalised: dividing a query by its own norm does not
    change its arg max. The (P, Ps) similarity matrix is never built whole: queries and,
    if needed, the bank are taken in blocks whose scores fit in `budget_bytes`.
    """
    budget = max(1, budget_bytes // queries.element_size())
    bank_block = min(normalized_bank.shape[0], budget)
    query_block = max(1, budget // bank_block)
    best_index = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, queries.shape[0], query_block):
        block = queries[start:start + query_block]
        best_score: torch.Tensor | None = None
        for bank_start in range(0, normalized_bank.shape[0], bank_block):
            scores = block @ normalized_bank[bank_start:bank_start + bank_block].t()
            score, index = scores.max(dim=1)
            index += bank_start
            if best_score is None:
                best_score, best_index[start:start + len(block)] = score, index
            else:
                better = score > best_score
                best_score = torch.where(better, score, best_score)
                best_index[start:start + len(block)] = torch.where(
                    better, index, best_index[start:start + len(block)])
    return best_index
