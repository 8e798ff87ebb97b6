"""Node setup check: can this node's NVIDIA driver run the installed torch's CUDA build?

cluster.yaml runs `python -m pipeline.batch.nodecheck` on every node after installing the pinned
packages. A driver too old for torch's CUDA does not make torch fail: `torch.cuda.is_available()`
is just False, and workers with `--device auto` would quietly synthesize on the CPU of a GPU node.
So a node with an NVIDIA GPU that torch cannot use fails its setup here, with one line saying
which driver it has and which it needs; a node without an NVIDIA GPU (the head) passes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

# The oldest Linux driver of each CUDA major version (NVIDIA's CUDA compatibility table); within a
# major version, minor version compatibility lets a build for any 12.x (13.x) run on it.
MINIMUM_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}


def driver_problem(torch_version: str, torch_cuda: str | None, driver: str, driver_cuda: str) -> str | None:
    """Why a driver `driver` supporting CUDA up to `driver_cuda` cannot run torch `torch_version`
    built for CUDA `torch_cuda` (None: a CPU-only build); None if it can."""
    if torch_cuda is None:
        return (f"torch {torch_version} is a CPU-only build, but this node has an NVIDIA GPU: install a CUDA "
                "build (constraints.txt pins the one the cluster uses)")
    needed, supported = int(torch_cuda.split(".")[0]), _version(driver_cuda)
    if supported[0] >= needed:
        return None
    minimum = MINIMUM_DRIVER.get(needed, f"one for CUDA {needed}")
    return (f"torch {torch_version} is built for CUDA {torch_cuda}, but this node's NVIDIA driver {driver} "
            f"supports CUDA up to {driver_cuda}: boot an image with driver >= {minimum}, or pin a torch built "
            f"for CUDA {supported[0]} in constraints.txt")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _nvidia_smi() -> tuple[int, str, str] | None:
    """(GPUs, driver version, highest CUDA version it supports), or None without an NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    gpus = len(re.findall(r"^GPU \d+:", listing.stdout, flags=re.MULTILINE))
    if listing.returncode != 0 or not gpus:
        return None
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=True).stdout.split()[0]
    header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=True).stdout
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    if cuda is None:
        raise RuntimeError(f"nvidia-smi does not say which CUDA version driver {driver} supports")
    return gpus, driver, cuda.group(1)


def check() -> str:
    """A line saying what was checked; RuntimeError with the reason when torch cannot use the GPUs."""
    found = _nvidia_smi()
    if found is None:
        return "node check: no NVIDIA GPU on this node, nothing to check"
    gpus, driver, driver_cuda = found
    import torch

    problem = driver_problem(torch.__version__, torch.version.cuda, driver, driver_cuda)
    if problem:
        raise RuntimeError(problem)
    try:
        for index in range(gpus):
            (torch.ones(1, device=f"cuda:{index}") + 1).item()
    except Exception as error:  # any failure here means workers could not use the GPU
        raise RuntimeError(f"torch {torch.__version__} cannot use GPU {index} with driver {driver}: "
                           f"{type(error).__name__}: {error}") from None
    return (f"node check: NVIDIA driver {driver} (CUDA {driver_cuda}) runs torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}) on {gpus} GPU(s)")


def main() -> int:
    try:
        print(check())
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        print(f"node check failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
