"""The loss modules carry their targets as buffers: `.to()` moves them and `state_dict()` saves them."""

from __future__ import annotations

import torch

from stylecore import MatchingParams
from stylecore.modules import ContentLoss, GlobalStyleLoss, LocalStyleLoss


def maps(seed: int) -> torch.Tensor:
    return torch.randn(1, 4, 9, 9, generator=torch.Generator().manual_seed(seed))


def test_every_target_is_a_buffer_that_to_converts_and_state_dict_holds():
    style, content, synthesis = maps(0), maps(1), maps(2)
    local = LocalStyleLoss(style, matching=MatchingParams(match_every=2, search_dim=4, reuse_min_patches=0),
                           evaluations=4)
    local(synthesis)
    modules = {"global": GlobalStyleLoss({"relu1_2": style, "relu2_2": content}), "content": ContentLoss(content),
               "local": local}
    expected = {"global": {"gram_relu1_2", "gram_relu2_2"}, "content": {"target"},
                "local": {"matcher.bank.normalized", "matcher.bank.by_offset", "matcher.bank.energy", "matcher.basis",
                          "matcher.projected", "matcher.residual_bound", "matches", "target.mean",
                          "target.covered", "target.residual"}}
    for name, module in modules.items():
        assert set(module.state_dict()) == expected[name]
        module.to(torch.float64)
        floats = [buffer for buffer in module.buffers() if buffer.is_floating_point()]
        assert floats and all(buffer.dtype == torch.float64 for buffer in floats), name
    assert local(synthesis.double()).dtype == torch.float64, "the reused target moved with the module"


def test_a_loaded_state_reproduces_the_loss():
    style, synthesis = maps(3), maps(4)
    matching = MatchingParams(match_every=3, search_dim=4, reuse_min_patches=0)
    trained = LocalStyleLoss(style, matching=matching, evaluations=6)
    trained(synthesis)
    copy = LocalStyleLoss(maps(5), matching=matching, evaluations=6)
    copy(maps(6))
    copy.load_state_dict(trained.state_dict())
    assert torch.equal(copy(synthesis + 0.1), trained(synthesis + 0.1))
