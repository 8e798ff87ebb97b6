"""Shared fixtures for stylecore tests: the real Caffe VGG-19."""

from __future__ import annotations

import pytest

from stylecore import Stylizer


@pytest.fixture(scope="session")
def stylizer() -> Stylizer:
    """One CPU stylizer with the real converted Caffe weights, shared by the session."""
    return Stylizer("caffe", "cpu")

