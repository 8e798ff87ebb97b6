"""Shared fixtures for stylecore tests: the real Caffe VGG-19, float64 for naive references."""

from __future__ import annotations

import pytest
import torch

from stylecore import Stylizer


@pytest.fixture(scope="session")
def stylizer() -> Stylizer:
    """One CPU stylizer with the real converted Caffe weights, shared by the session."""
    return Stylizer("caffe", "cpu")



@pytest.fixture
def float64():
    """Naive references and the code under test both in float64, so tolerances can be tight."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
