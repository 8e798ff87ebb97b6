"""Coherent nearest-patch search: the reduced search on a sparse grid of queries, spread by propagation.

Stride-1 patches of neighbouring positions overlap, so their nearest style patches
tend to be neighbours in the style too (the observation behind PatchMatch, Barnes et
al. 2009). The global search therefore runs only on anchors, every `step`-th row and
column of the query grid (plus the last ones); every other query takes the best, by
exact normalised cross-correlation, of the anchors around it with their matches
shifted by its offset from them, and of its current match when there is one.
"""

from __future__ import annotations

import torch

from stylecore.matching import ProjectedBank, approximate_nearest_patches


def anchor_positions(count: int, step: int, device: torch.device | None = None) -> torch.Tensor:
    """Every `step`-th of `count` positions, and the last one: (A,) increasing."""
    last = [] if (count - 1) % step == 0 else [count - 1]  # decided on the host: no GPU sync
    return torch.tensor([*range(0, count, step), *last], device=device)


def _brackets(count: int, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of `count` positions, the index in `anchors` of the anchor at or before it and at or after it."""
    positions = torch.arange(count, device=anchors.device)
    return torch.searchsorted(anchors, positions, right=True) - 1, torch.searchsorted(anchors, positions)


def propagated_candidates(anchor_matches: torch.Tensor, grid: tuple[int, int], bank_grid: tuple[int, int],
                          step: int) -> torch.Tensor:
    """(P, 4) candidate bank rows per query: each surrounding anchor's match shifted by the query's offset.

    `anchor_matches` (Ar, Ac): bank row matched to each anchor of the (rows, columns) query
    grid; `bank_grid` (rows, columns) is the style's patch grid, whose rows are numbered
    row-major. A shift that leaves the style grid is clamped to its edge.
    """
    rows, columns = grid
    bank_rows, bank_columns = bank_grid
    device = anchor_matches.device
    anchor_rows, anchor_columns = anchor_positions(rows, step, device), anchor_positions(columns, step, device)
    row_brackets, column_brackets = _brackets(rows, anchor_rows), _brackets(columns, anchor_columns)
    query_rows = torch.arange(rows, device=device).view(rows, 1)
    query_columns = torch.arange(columns, device=device).view(1, columns)
    candidates = []
    for row_anchor in row_brackets:
        for column_anchor in column_brackets:
            match = anchor_matches[row_anchor.view(rows, 1), column_anchor.view(1, columns)]
            match_row = (match // bank_columns + query_rows - anchor_rows[row_anchor].view(rows, 1))
            match_column = (match % bank_columns + query_columns - anchor_columns[column_anchor].view(1, columns))
            candidates.append(match_row.clamp(0, bank_rows - 1) * bank_columns
                              + match_column.clamp(0, bank_columns - 1))
    return torch.stack(candidates, dim=-1).view(rows * columns, len(candidates))


@torch.no_grad()
def best_candidates(queries: torch.Tensor, normalized_bank: torch.Tensor, candidates: torch.Tensor,
                    budget_bytes: int = 256 * 2**20, query_block: int = 256) -> torch.Tensor:
    """(P,) the row of `candidates` (P, K) whose bank row has the highest normalised cross-correlation.

    Queries need not be normalised (it does not change an arg max). The gathered
    candidates are taken `query_block` queries at a time (a few MB at 512/512, which stays
    in cache: much faster on a CPU than blocks filling the whole budget), fewer if even
    that would not fit in `budget_bytes`.
    """
    count, width = candidates.shape[1], normalized_bank.shape[1]
    block = max(1, min(query_block, budget_bytes // (count * width * queries.element_size())))
    best = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, queries.shape[0], block):
        rows = candidates[start:start + block]
        scores = torch.bmm(normalized_bank[rows], queries[start:start + block].unsqueeze(2)).squeeze(2)
        best[start:start + block] = rows.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
    return best


@torch.no_grad()
def propagated_nearest_patches(queries: torch.Tensor, grid: tuple[int, int], normalized_bank: torch.Tensor,
                               bank_grid: tuple[int, int], bank: ProjectedBank, step: int = 2,
                               previous: torch.Tensor | None = None, candidates: int = 8,
                               budget_bytes: int = 256 * 2**20) -> torch.Tensor:
    """Nearest bank row per query (P,), searching globally only every `step`-th row and column.

    `queries` (P, D) are the patches of a (rows, columns) `grid` in row-major order;
    `normalized_bank` (Ps, D) those of a `bank_grid`, normalised; `bank` its reduced
    basis for the anchors' search (`candidates` re-ranked exactly). `previous` (P,), the
    current matches, is one more candidate of every query, so a query never ends on a
    worse match than the one it had. `step` = 1 searches every query globally.
    """
    rows, columns = grid
    queries = queries.contiguous()  # rows are gathered below: from a strided view each would be scattered
    anchor_rows = anchor_positions(rows, step, queries.device)
    anchor_columns = anchor_positions(columns, step, queries.device)
    anchors = (anchor_rows.view(-1, 1) * columns + anchor_columns.view(1, -1)).view(-1)
    anchor_matches = approximate_nearest_patches(queries[anchors], normalized_bank, bank, candidates, budget_bytes)
    pool = propagated_candidates(anchor_matches.view(len(anchor_rows), len(anchor_columns)), grid, bank_grid, step)
    if previous is not None:
        pool = torch.cat([pool, previous.view(-1, 1)], dim=1)
    return best_candidates(queries, normalized_bank, pool, budget_bytes)
