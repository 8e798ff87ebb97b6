"""The node setup check: a node whose NVIDIA driver cannot run the installed torch's CUDA build fails
with one line naming both; a node without an NVIDIA GPU passes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import torch

from pipeline.batch.nodecheck import driver_problem

# What `nvidia-smi` prints on a g6.xlarge (abridged to the lines that are read), with a driver one CUDA
# major version older than the installed torch's build.
OLD_CUDA = f"{int((torch.version.cuda or '13.0').split('.')[0]) - 1}.2"
OLD_DRIVER_SMI = f"""#!/bin/sh
case "$1" in
  -L) echo "GPU 0: NVIDIA L4 (UUID: GPU-5b1c2f0e-0000-0000-0000-000000000000)";;
  --query-gpu=driver_version) echo "535.183.01";;
  *) echo "| NVIDIA-SMI 535.183.01    Driver Version: 535.183.01    CUDA Version: {OLD_CUDA}     |";;
esac
"""


def test_a_driver_for_an_older_cuda_major_is_refused_with_what_to_do():
    problem = driver_problem("2.14.1+cu130", "13.0", "535.183.01", "12.2")
    assert problem == ("torch 2.14.1+cu130 is built for CUDA 13.0, but this node's NVIDIA driver 535.183.01 "
                       "supports CUDA up to 12.2: boot an image with driver >= 580.65.06, or pin a torch built "
                       "for CUDA 12 in constraints.txt")
    assert "CPU-only build" in driver_problem("2.14.1+cpu", None, "580.95.05", "13.0")


def test_a_driver_of_the_same_or_a_newer_cuda_major_is_accepted():
    assert driver_problem("2.14.1+cu130", "13.0", "580.95.05", "13.0") is None
    assert driver_problem("2.14.1+cu128", "12.8", "550.54.15", "12.4") is None, "minor version compatibility"
    assert driver_problem("2.14.1+cu128", "12.8", "580.95.05", "13.0") is None


def run_check(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.batch.nodecheck"], capture_output=True, text=True,
                          env={**os.environ, "PATH": path})


def test_a_node_without_an_nvidia_gpu_passes(tmp_path):
    done = run_check(f"{tmp_path}:/usr/bin:/bin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "node check: no NVIDIA GPU on this node, nothing to check"


def test_a_gpu_node_with_a_driver_too_old_for_the_installed_torch_fails_its_setup(tmp_path):
    """nvidia-smi cannot run without a GPU; a script that prints what it prints stands in for it."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(OLD_DRIVER_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    done = run_check(f"{tmp_path}:/usr/bin:/bin")
    assert done.returncode == 1 and done.stdout == ""
    expected = driver_problem(torch.__version__, torch.version.cuda, "535.183.01", OLD_CUDA)
    assert expected and done.stderr.strip() == f"node check failed: {expected}"
