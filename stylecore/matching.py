"""Nearest-neighbour search of the local loss: which style patch each synthesis patch matches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch


def normalize_patches(patches: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows divided by their L2 norm, so a dot product is the normalised cross-correlation (Eq. 5)."""
    return patches.div(patches.norm(dim=1, keepdim=True).clamp_min(eps))


@torch.no_grad()
def nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor,
                    budget_bytes: int = 256 * 2**20) -> torch.Tensor:
    """Index of the bank row with the highest normalised cross-correlation, per query row (Eq. 5).

    `queries` (P, D) need not be normalised: dividing a query by its own norm does not
    change its arg max. The (P, Ps) similarity matrix is never built whole: queries and,
    if needed, the bank are taken in blocks whose scores fit in `budget_bytes`, all
    written into one buffer allocated once (a fresh one per block could land beside the
    last, freed one in a fragmented heap, and hold several budgets' worth of pages).
    """
    budget = max(1, budget_bytes // queries.element_size())
    bank_block = min(normalized_bank.shape[0], budget)
    query_block = max(1, min(queries.shape[0], budget // bank_block))
    scores_buffer = torch.empty(query_block * bank_block, dtype=queries.dtype, device=queries.device)
    best_index = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, queries.shape[0], query_block):
        block = queries[start:start + query_block]
        best_score: torch.Tensor | None = None
        for bank_start in range(0, normalized_bank.shape[0], bank_block):
            bank_rows = normalized_bank[bank_start:bank_start + bank_block]
            scores = scores_buffer[:len(block) * len(bank_rows)].view(len(block), len(bank_rows))
            torch.mm(block, bank_rows.t(), out=scores)
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


@dataclass(frozen=True)
class ProjectedBank:
    """A normalised style patch bank reduced to its dominant directions, for a cheap first pass.

    `basis` (d, D) has orthonormal rows; `projected` (Ps, d) holds every bank row's
    coordinates in it; `residual_bound` (0-d) is the largest norm of what a bank row
    loses to the projection. For unit vectors q and b the projection error of their dot
    product is at most |q_perp| * |b_perp|, which is what makes the search's answers
    certifiable.
    """

    basis: torch.Tensor
    projected: torch.Tensor
    residual_bound: torch.Tensor


@dataclass(frozen=True)
class ApproximateMatch:
    """Result of `certified_nearest_patches`, one entry per query (all (P,) tensors)."""

    index: torch.Tensor  # bank row chosen: the best candidate by exact normalised cross-correlation
    certified: torch.Tensor  # True where no bank row outside the candidates can score higher
    error_bound: torch.Tensor  # upper bound of (best NCC over the whole bank - NCC of `index`); 0 where certified


def principal_basis(normalized_bank: torch.Tensor, dim: int, seed: int = 0,
                    oversampling: int = 16, power_iterations: int = 2) -> torch.Tensor:
    """(dim, D) orthonormal rows spanning the dominant right-singular subspace of the (Ps, D) bank.

    A randomised SVD (range finder with power iterations, Halko et al. 2011) with its own
    seeded generator, so the basis is deterministic and costs O(Ps * D * dim) instead of
    the O(Ps * D^2) of an exact eigendecomposition.
    """
    rows, width = normalized_bank.shape
    sketch_width = min(dim + oversampling, rows, width)
    generator = torch.Generator(device=normalized_bank.device).manual_seed(seed)
    sketch = normalized_bank @ torch.randn(width, sketch_width, generator=generator,
                                           device=normalized_bank.device, dtype=normalized_bank.dtype)
    for _ in range(power_iterations):
        sketch = normalized_bank @ (normalized_bank.t() @ torch.linalg.qr(sketch).Q)
    range_basis = torch.linalg.qr(sketch).Q
    right = torch.linalg.svd(range_basis.t() @ normalized_bank, full_matrices=False).Vh
    basis: torch.Tensor = right[:dim].contiguous()
    return basis


@torch.no_grad()
def project_bank(normalized_bank: torch.Tensor, dim: int, seed: int = 0) -> ProjectedBank:
    """Reduce a (Ps, D) normalised bank to `dim` principal directions (once per pyramid level)."""
    basis = principal_basis(normalized_bank, dim, seed)
    projected = normalized_bank @ basis.t()
    residual = (normalized_bank.square().sum(dim=1) - projected.square().sum(dim=1)).clamp_min(0).sqrt()
    return ProjectedBank(basis, projected.contiguous(), residual.max())


class _CandidateBlock(NamedTuple):
    """One block of queries of the reduced search, with its re-ranked candidates."""

    queries: torch.Tensor  # (Pb, D) the block's queries, normalised
    coordinates: torch.Tensor  # (Pb, d) their coordinates in the reduced basis
    reduced_scores: torch.Tensor  # (Pb, count) the candidates' reduced-dimension scores, best first
    rows: torch.Tensor  # (Pb, count) the candidates' bank rows
    best_score: torch.Tensor  # (Pb,) the best candidate's exact score
    best: torch.Tensor  # (Pb,) its bank row


def _candidate_blocks(queries: torch.Tensor, normalized_bank: torch.Tensor, bank: ProjectedBank, candidates: int,
                      budget_bytes: int, query_block: int, bank_block: int) -> Iterator[_CandidateBlock]:
    """The reduced search block by block: the `candidates` best rows per query in `bank`'s basis,
    re-ranked exactly. Blocks are at most `query_block` x `bank_block` scores (small enough to stay
    in cache on a CPU), fewer if the scores or the gathered candidates would not fit in half of
    `budget_bytes` each: memory does not grow with the bank's size."""
    rows, width = normalized_bank.shape
    count = min(candidates, rows)
    query_block, bank_block = search_blocks(queries.shape[0], rows, width, count, queries.element_size(),
                                            budget_bytes, query_block, bank_block)
    for start in range(0, queries.shape[0], query_block):
        block = normalize_patches(queries[start:start + query_block].contiguous())
        coordinates = block @ bank.basis.t()
        top_score, top_index = _top_candidates(coordinates, bank.projected, count, bank_block)
        exact = torch.bmm(normalized_bank[top_index], block.unsqueeze(2)).squeeze(2)
        best_score, best_position = exact.max(dim=1)
        yield _CandidateBlock(block, coordinates, top_score, top_index, best_score,
                              top_index.gather(1, best_position.unsqueeze(1)).squeeze(1))


@torch.no_grad()
def approximate_nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor, bank: ProjectedBank,
                                candidates: int = 8, budget_bytes: int = 256 * 2**20,
                                query_block: int = 256, bank_block: int = 4096) -> torch.Tensor:
    """Nearest bank row per query (P,) by normalised cross-correlation, searched in reduced dimension.

    `queries` (P, D) are compared with the bank in `bank`'s d-dimensional basis; the
    `candidates` best rows per query are then re-ranked exactly in D dimensions. What the
    local loss runs; `certified_nearest_patches` also says which answers are provably exact.
    """
    return torch.cat([block.best for block in _candidate_blocks(queries, normalized_bank, bank, candidates,
                                                                budget_bytes, query_block, bank_block)])


@torch.no_grad()
def certified_nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor, bank: ProjectedBank,
                              candidates: int = 8, budget_bytes: int = 256 * 2**20,
                              query_block: int = 256, bank_block: int = 4096) -> ApproximateMatch:
    """`approximate_nearest_patches` with a certificate for each answer.

    An answer is certified exact where the best candidate's exact score beats every
    possible score outside the candidates (the d-dimensional score of the worst candidate
    plus the largest projection error); elsewhere `error_bound` bounds the loss in NCC.
    For measuring the search (tests, benchmarks); the loss never needs it.
    """
    rows, width = normalized_bank.shape
    slack = 8 * math.sqrt(width) * torch.finfo(queries.dtype).eps
    index, certified, error_bound = [], [], []
    for block in _candidate_blocks(queries, normalized_bank, bank, candidates, budget_bytes, query_block,
                                   bank_block):
        if block.rows.shape[1] == rows:
            outside = torch.full_like(block.best_score, -math.inf)
        else:
            residual = (block.queries.square().sum(dim=1) - block.coordinates.square().sum(dim=1)).clamp_min(0).sqrt()
            outside = block.reduced_scores.min(dim=1).values + residual * bank.residual_bound + slack
        index.append(block.best)
        certified.append(block.best_score >= outside)
        error_bound.append((outside - block.best_score).clamp_min(0))
    return ApproximateMatch(torch.cat(index), torch.cat(certified), torch.cat(error_bound))


def search_blocks(queries: int, rows: int, width: int, count: int, element_size: int, budget_bytes: int,
                  query_block: int = 256, bank_block: int = 4096) -> tuple[int, int]:
    """(queries, bank rows) per block of the reduced search, so that its working memory,
    `query_block` x `bank_block` scores plus `query_block` x (`count` gathered + 1 normalised)
    rows of `width`, stays within `budget_bytes` however large the bank is (down to one
    query per block)."""
    half_budget = budget_bytes // (2 * element_size)
    query_rows = max(1, min(queries, query_block, half_budget // ((count + 1) * width)))
    bank_rows = max(count, min(rows, bank_block, half_budget // query_rows))
    return query_rows, bank_rows


def _top_candidates(coordinates: torch.Tensor, projected: torch.Tensor, count: int,
                    bank_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices), each (Pb, count): the best bank rows by reduced-dimension dot product."""
    best_score, best_index = (coordinates @ projected[:bank_block].t()).topk(count, dim=1)
    for bank_start in range(bank_block, projected.shape[0], bank_block):
        scores = coordinates @ projected[bank_start:bank_start + bank_block].t()
        score, index = scores.topk(min(count, scores.shape[1]), dim=1)
        best_score, position = torch.cat([best_score, score], dim=1).topk(count, dim=1)
        best_index = torch.cat([best_index, index + bank_start], dim=1).gather(1, position)
    return best_score, best_index
