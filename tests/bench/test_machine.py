"""The header every benchmark prints names the machine, so figures from two machines are never mixed."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bench.machine import cpu_model, machine


def test_header_names_cpu_cores_torch_threads_and_load() -> None:
    line = machine()
    model = next(text.split(":", 1)[1].strip() for text in Path("/proc/cpuinfo").read_text().splitlines()
                 if text.startswith("model name"))
    assert cpu_model() == model
    assert line.startswith(f"{model}, {os.cpu_count()} cores, torch {torch.__version__} "
                           f"with {torch.get_num_threads()} threads")
    assert "load average " in line

