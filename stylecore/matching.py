"""Nearest-neighbour search of the local loss: which style patch each synthesis patch matches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

# The CPU's search budget: blocks of scores small enough to stay near the cache, memory flat
# whatever the style's size (BENCHMARKS.md, "Memory").
CPU_SEARCH_BUDGET_BYTES = 256 * 2**20
# On a GPU one block should hold a whole refresh at 512/512 (~2.3 GiB for the reduced search
# over every patch), bounded by a share of the device's memory so that several syntheses fit.
GPU_SEARCH_BUDGET_BYTES = 4 * 2**30
GPU_MEMORY_SHARE = 8


@dataclass(frozen=True)
class SearchSettings:
    """How the nearest-patch searches run on one device: block sizes and precision, never what they find.

    `budget_bytes` bounds the working memory of a search; `query_block` x `bank_block` caps a
    block of the reduced search's scores below that (small on a CPU, for its cache). Candidate
    scores are computed in `search_dtype`; float16 (a GPU's tensor cores) shortlists
    `shortlist` rows per query for the exact search, and every answer is re-ranked by exact
    float32 normalised cross-correlation, as the reduced search always is.
    """

    budget_bytes: int = CPU_SEARCH_BUDGET_BYTES
    query_block: int = 256
    bank_block: int = 4096
    search_dtype: torch.dtype = torch.float32
    shortlist: int = 4

    @classmethod
    def for_device(cls, device: torch.device | str, budget_bytes: int | None = None,
                   reduced_precision: bool = True) -> SearchSettings:
        """The CPU's cache-sized float32 blocks, or on CUDA one block per search (within
        min(4 GiB, 1/8 of the device's memory) unless `budget_bytes` says otherwise) with
        float16 candidate scores (unless `reduced_precision` is False)."""
        device = torch.device(device)
        if device.type != "cuda":
            return cls(budget_bytes or CPU_SEARCH_BUDGET_BYTES)
        if budget_bytes is None:
            total = torch.cuda.get_device_properties(device).total_memory
            budget_bytes = min(GPU_SEARCH_BUDGET_BYTES, total // GPU_MEMORY_SHARE)
        return cls(budget_bytes, query_block=2**31, bank_block=2**31,
                   search_dtype=torch.float16 if reduced_precision else torch.float32)

    @property
    def reduced_precision(self) -> bool:
        return self.search_dtype != torch.float32


def normalize_patches(patches: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows divided by their L2 norm, so a dot product is the normalised cross-correlation (Eq. 5)."""
    return patches.div(patches.norm(dim=1, keepdim=True).clamp_min(eps))


@torch.no_grad()
def nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor,
                    budget_bytes: int = CPU_SEARCH_BUDGET_BYTES) -> torch.Tensor:
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

    def to_dtype(self, dtype: torch.dtype) -> ProjectedBank:
        """The same bank with its basis and coordinates in `dtype`: the precision a search runs in."""
        return ProjectedBank(self.basis.to(dtype), self.projected.to(dtype), self.residual_bound)


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
    the O(Ps * D^2) of an exact eigendecomposition. The random test matrix is drawn on the
    CPU, so every device starts from the same one.
    """
    rows, width = normalized_bank.shape
    sketch_width = min(dim + oversampling, rows, width)
    generator = torch.Generator().manual_seed(seed)
    test_matrix = torch.randn(width, sketch_width, generator=generator, dtype=normalized_bank.dtype)
    sketch = normalized_bank @ test_matrix.to(normalized_bank.device)
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
    coordinates: torch.Tensor  # (Pb, d) their coordinates in the searched space (search dtype)
    reduced_scores: torch.Tensor  # (Pb, count) the candidates' scores in that space, best first
    rows: torch.Tensor  # (Pb, count) the candidates' bank rows
    best_score: torch.Tensor  # (Pb,) the best candidate's exact score
    best: torch.Tensor  # (Pb,) its bank row


def _candidate_blocks(queries: torch.Tensor, normalized_bank: torch.Tensor, basis: torch.Tensor | None,
                      searched: torch.Tensor, candidates: int, budget_bytes: int, query_block: int,
                      bank_block: int) -> Iterator[_CandidateBlock]:
    """The shortlist search block by block: the `candidates` best rows per query by dot product with
    `searched` (Ps, d), the bank in `basis`'s coordinates (or the bank itself when `basis` is None),
    in their dtype, then re-ranked by exact float32 score. Blocks are at most `query_block` x
    `bank_block` scores, fewer if the scores or the gathered candidates would not fit in half of
    `budget_bytes` each: memory does not grow with the bank's size."""
    rows, width = normalized_bank.shape
    count = min(candidates, rows)
    query_block, bank_block = search_blocks(queries.shape[0], rows, width, count, queries.element_size(),
                                            budget_bytes, query_block, bank_block)
    for start in range(0, queries.shape[0], query_block):
        block = normalize_patches(queries[start:start + query_block].contiguous())
        coordinates = block.to(searched.dtype)
        if basis is not None:
            coordinates = coordinates @ basis.t()
        top_score, top_index = _top_candidates(coordinates, searched, count, bank_block)
        exact = torch.bmm(normalized_bank[top_index], block.unsqueeze(2)).squeeze(2)
        best_score, best_position = exact.max(dim=1)
        yield _CandidateBlock(block, coordinates, top_score, top_index, best_score,
                              top_index.gather(1, best_position.unsqueeze(1)).squeeze(1))


@torch.no_grad()
def shortlisted_nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor, searched_bank: torch.Tensor,
                                shortlist: int = 4, budget_bytes: int = CPU_SEARCH_BUDGET_BYTES,
                                query_block: int = 256, bank_block: int = 4096) -> torch.Tensor:
    """The exact search in reduced precision: nearest bank row per query (P,).

    Scores against `searched_bank`, the normalised bank in a reduced precision (float16 on a
    GPU), shortlist `shortlist` rows per query, and the shortlist is re-ranked exactly in float32.
    The answer is `nearest_patches`'s unless `shortlist` rows score within the reduced
    precision's rounding (~1e-3 in float16) of the exact nearest: then one of those.
    """
    return torch.cat([block.best for block in _candidate_blocks(queries, normalized_bank, None, searched_bank,
                                                                shortlist, budget_bytes, query_block, bank_block)])


@torch.no_grad()
def approximate_nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor, bank: ProjectedBank,
                                candidates: int = 8, budget_bytes: int = CPU_SEARCH_BUDGET_BYTES,
                                query_block: int = 256, bank_block: int = 4096) -> torch.Tensor:
    """Nearest bank row per query (P,) by normalised cross-correlation, searched in reduced dimension.

    `queries` (P, D) are compared with the bank in `bank`'s d-dimensional basis, in the basis's
    dtype (see `ProjectedBank.to_dtype`); the `candidates` best rows per query are then re-ranked
    exactly in D dimensions and float32. What the local loss runs; `certified_nearest_patches`
    also says which answers are provably exact.
    """
    return torch.cat([block.best for block in _candidate_blocks(queries, normalized_bank, bank.basis, bank.projected,
                                                                candidates, budget_bytes, query_block, bank_block)])


@torch.no_grad()
def certified_nearest_patches(queries: torch.Tensor, normalized_bank: torch.Tensor, bank: ProjectedBank,
                              candidates: int = 8, budget_bytes: int = CPU_SEARCH_BUDGET_BYTES,
                              query_block: int = 256, bank_block: int = 4096) -> ApproximateMatch:
    """`approximate_nearest_patches` with a certificate for each answer.

    An answer is certified exact where the best candidate's exact score beats every
    possible score outside the candidates (the d-dimensional score of the worst candidate
    plus the largest projection error, plus the rounding of the precision the candidates
    were scored in, `bank.basis.dtype`); elsewhere `error_bound` bounds the loss in NCC.
    For measuring the search (tests, benchmarks); the loss never needs it.
    """
    rows, width = normalized_bank.shape
    slack = 8 * math.sqrt(width) * max(torch.finfo(bank.basis.dtype).eps, torch.finfo(queries.dtype).eps)
    index, certified, error_bound = [], [], []
    for block in _candidate_blocks(queries, normalized_bank, bank.basis, bank.projected, candidates, budget_bytes,
                                   query_block, bank_block):
        if block.rows.shape[1] == rows:
            outside = torch.full_like(block.best_score, -math.inf)
        else:
            coordinates = block.coordinates.float()
            residual = (block.queries.square().sum(dim=1) - coordinates.square().sum(dim=1)).clamp_min(0).sqrt()
            outside = block.reduced_scores.min(dim=1).values.float() + residual * bank.residual_bound + slack
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
