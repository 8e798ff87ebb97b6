"""stylecore side by side with pystiche 1.0.1 and neural-style 0.5.7 on one objective (issue 18).

    .venv/bin/python -m bench.peers --setup     # once: the peers' own virtualenv, bench/.peers-venv
    flock /work/locks/bench.lock .venv/bin/python -m bench.peers [--rounds 5] [--sizes 256 512]

The peers live in their own virtualenv (`--setup`: the same torch and torchvision as this
one, from this machine's disk, plus `pystiche==1.0.1` and `neural-style==0.5.7`; git-ignored,
never a dependency of stylebatch or its tests). Every system runs in its own process
(`bench.peer_workers` for the peers), one at a time: each case is set up in every process,
then the systems take turns, one evaluation each per round, in an order rotated every
round; the first round warms up and is discarded. Seconds are medians over the rounds,
ratios are medians of the per-round ratios (peer / stylecore, paired), peak RSS is each
process's VmHWM during its evaluations (weights, targets and libraries included).

Same weights: stylecore's converted Caffe VGG-19 (`load_weights('caffe')`) is written as a
torchvision-keyed state dict and fed to each peer's own loader; every conv layer is
checked equal (torch.equal) in each process. Same inputs: the astronaut and the Great
Wave, resized by stylecore to the size and mapped to Caffe space by its Normalization
(BGR, RGB x 255, minus the mean pixel), handed to every system as tensors, so no peer
preprocessing runs (neural-style's would scale by 256). Evaluations are at content +
N(0, 8^2) noise (Caffe units, seed 0); whole runs start from stylecore's initialisation
(N(0, 1e-3^2) around the mean pixel, seed 0).

The same objective, Eq. (1) with the paper's weights (a1 = 20 on relu1_2, relu2_2,
relu3_3, relu4_2; a2 = 1e-4 on relu3_1 with 3x3 patches, stride 1; a3 = 20 on relu3_1;
no TV), in each system's own terms:
- Gram: stylecore G = F F^T / (C H W), mean squared difference per layer, summed, x a1.
  neural-style: the same Gram and nn.MSELoss, -style_weight a1. pystiche's
  gram_matrix(normalize=True) divides by H W only, so its Gram is C x ours and its MSE
  C^2 x ours: GramLoss score_weight a1 / C^2 per layer (C = 64, 128, 256, 512). Equal up
  to float rounding.
- Content: feature MSE on relu3_1 x a3 in all three (-content_weight, FeatureReconstructionLoss).
- MRF: both stylecore and pystiche match each synthesis patch to the style patch of
  highest cosine similarity (normalised cross-correlation, no gradient). stylecore (as
  CNNMRF) has the loss 0.5 sum (F - T)^2 + const, T the mean of the matched patches
  covering a position: gradient a2 (F - T), and a2 sum_patches |p - q|^2 / 18 where 9
  patches cover a position. pystiche's MRFLoss is the mean of (p - q)^2 over all
  P x 9 x C patch elements: score_weight a2 P C / 2 makes its value and gradient equal to
  ours wherever 9 patches cover a position; on the relu3_1 map's outer two rows and
  columns ours averages over the fewer patches there, pystiche still divides by 9, so
  the two differ by a few percent (the printed objective and gradient at the test image
  show by how much). neural-style has no MRF loss.
- One evaluation is what each system's optimiser closure does: zero the gradient, the
  loss, backward (stylecore: Stylizer's closure; neural-style: its own `feval`, taken from
  its main(); pystiche: image_optimization's closure). stylecore "default" is its shipped
  matching (refresh every 5 evaluations, reduced search): one evaluation is the mean of a
  cycle of 5 consecutive evaluations of a level's schedule (one refresh, four reuses);
  "exact" is match_every=1. Gatys has no matching, so the two are one.
- pystiche "encoder frozen": requires_grad False on its VGG, as stylecore and
  neural-style have theirs; "as shipped" (Gatys rows): vgg19_multi_layer_encoder()
  unchanged, whose backward also computes every conv weight's gradient, the same added
  seconds in every row.
- Allocator: stylecore (`retain_memory=True`, the default) sets glibc's M_MMAP_MAX 0 and
  M_TRIM_THRESHOLD 256 MiB in its process (stylecore.allocator). "glibc allocator" is
  `Stylizer(retain_memory=False)`; "neural-style, retained heap" is neural-style with the
  same setting through glibc's MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ variables.
- Whole runs: one level, L-BFGS with lr 1 and history 25 in all (CNNMRF's; neural-style
  -lbfgs_num_correction 25, pystiche's default optimiser with history_size 25). The final
  objective of every system is ONE function, stylecore's exact objective
  (stylecore.metrics.exact_objective) of the returned image clamped to RGB 0..1.
  neural-style returns (saves) the image of its last evaluation, pystiche the image after
  its last update, stylecore (stylecore.lbfgs) its best iterate; evaluations and updates are
  counted in each process (the peers' torch.optim.LBFGS iterations; stylecore's evaluations
  less one per level and less its rejected steps, which did not move the image).
- stylecore runs the paper's settings (`FusionParams.paper()`: these weights, the summed local
  term, noise initialisation), not its own defaults, so that every system has one objective.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from bench.common import CONTENT, STYLE, demo_rgb, gib, print_table
from bench.machine import load_average, peak_rss_bytes, print_machine, reset_peak_rss
from bench.peer_workers import Case, compare_convs, load_inputs, save_gradient, serve, timed_evaluations
from stylecore import FusionParams, LossTerms, Stylizer
from stylecore.allocator import TRIM_THRESHOLD_BYTES, release_retained_memory
from stylecore.metrics import exact_objective
from stylecore.objective import FusionObjective
from stylecore.vgg import Normalization, VGGFeatures
from stylecore.weights import load_weights

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / "bench" / ".peers-venv"
PEER_PINS = ("pystiche==1.0.1", "neural-style==0.5.7")
WEIGHTS_FILE = "vgg19-caffe-stylecore.pth"  # neural-style wants "vgg" and "19" in the name
RETAINED_HEAP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES)}
# The objective every peer is mapped onto: the paper's weights and Eq. (4)'s summed local term
# (stylecore's default weights a mean local term, which no peer has), with default matching.
PAPER = FusionParams.paper()
KINDS = {"gatys": {"alpha_local": 0.0}, "mrf": {"alpha_global": 0.0}, "fusion": {}}
KIND_LABELS = {"gatys": "Gatys (global + content)", "mrf": "MRF only (local + content, a1 = 0)",
               "fusion": "fusion"}
ALL = ("gatys", "mrf", "fusion")


@dataclass(frozen=True)
class Column:
    """One system as the tables show it: a worker process and the variant it runs."""

    label: str
    worker: str
    variant: str
    kinds: tuple[str, ...]


COLUMNS = (
    Column("stylecore default", "stylecore", "default", ALL),
    Column("stylecore exact", "stylecore", "exact", ("mrf", "fusion")),
    Column("neural-style 0.5.7", "neural-style", "as shipped", ("gatys",)),
    Column("pystiche 1.0.1 (encoder frozen)", "pystiche", "frozen", ALL),
    Column("pystiche 1.0.1 as shipped", "pystiche", "shipped", ("gatys",)),
    Column("stylecore, glibc allocator", "stylecore-glibc", "default", ("gatys",)),
    Column("neural-style, retained heap", "neural-style-retained", "as shipped", ("gatys",)),
)
RUN_COLUMNS = {
    "gatys": [COLUMNS[0], COLUMNS[5], COLUMNS[2], COLUMNS[3]],
    "mrf": [COLUMNS[0], COLUMNS[1], COLUMNS[3]],
}


def case_spec(kind: str, size: int, inputs: Path) -> Case:
    """What every worker needs to build the case's objective (the paper's weights, `KINDS` zeroing one)."""
    params = PAPER.with_overrides(**KINDS[kind])
    return {"kind": kind, "size": size, "inputs": str(inputs), "alpha_global": params.alpha_global,
            "alpha_local": params.alpha_local, "alpha_content": params.alpha_content,
            "global_layers": list(params.global_layers), "local_layer": params.local_layer,
            "content_layer": params.content_layer, "patch_size": params.patch_size,
            "lbfgs_history": params.lbfgs_history}


def case_params(case: Case, variant: str) -> FusionParams:
    """stylecore's parameters for a case; "exact" matches at every evaluation."""
    params = PAPER.with_overrides(**KINDS[case["kind"]])
    return params.with_overrides(match_every=1) if variant == "exact" else params


class StylecoreWorker:
    """stylecore's side of the protocol (`bench.peer_workers.serve`), on the CPU."""

    def __init__(self, weights: Path, retain_memory: bool) -> None:
        self.stylizer = Stylizer("caffe", "cpu", retain_memory=retain_memory)
        self.weights = weights
        self.variants: dict[str, tuple[FusionObjective, torch.Tensor, int]] = {}

    def hello(self) -> dict[str, Any]:
        convs = [module for module in self.stylizer.extractor.layers if isinstance(module, nn.Conv2d)]
        return {"version": "this checkout", "torch": torch.__version__, "threads": torch.get_num_threads(),
                "weights": compare_convs(convs, self.weights) + " (up to relu4_2, all it holds)"}

    def setup(self, case: Case, variants: list[str]) -> dict[str, Any]:
        tensors = load_inputs(case)
        for variant in variants:
            params = case_params(case, variant)
            objective = FusionObjective(self.stylizer.extractor, tensors["content"], tensors["style"], params)
            cycle = objective.local_loss.schedule.match_every if params.alpha_local > 0 else 1
            self.variants[variant] = (objective, tensors["image"].clone().requires_grad_(True), cycle)
        return {}

    def eval(self, variant: str, grad_path: str | None = None) -> dict[str, float]:
        objective, image, cycle = self.variants[variant]

        def evaluate() -> float:  # Stylizer._optimize's closure
            image.grad = None
            total = torch.stack(list(objective.terms(image).values())).sum()
            total.backward()
            return float(total)

        figures = timed_evaluations(evaluate, cycle)
        save_gradient(image, grad_path)
        return figures

    def drop(self) -> dict[str, Any]:
        self.variants.clear()
        gc.collect()
        release_retained_memory()
        return {}

    def run(self, case: Case, variant: str, iterations: int, out: str) -> dict[str, Any]:
        tensors = load_inputs(case)
        params = case_params(case, variant).with_overrides(levels=1, size=case["size"], iterations=iterations)
        reset_peak_rss()
        result = self.stylizer(tensors["content_rgb"], tensors["style_rgb"], params)
        torch.save({"image": result.image, "space": "rgb"}, out)
        moved = result.evaluations - params.levels - result.rejected_steps  # stylecore.lbfgs: a step per evaluation
        return {"seconds": result.seconds, "evaluations": result.evaluations, "updates": moved,
                "peak_rss": peak_rss_bytes()}


class Worker:
    """A system's process, asked one JSON request at a time."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"))

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        stdin.write(json.dumps({"op": op, **fields}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} ended (exit {self.process.wait()}); its log: {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.name} failed on {op} (log {self.log}):\n{reply['error']}")
        return reply

    def close(self) -> None:
        stdin, _ = self._pipes()
        stdin.write(json.dumps({"op": "quit"}) + "\n")
        stdin.close()
        self.process.wait(timeout=120)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout


def start_workers(names: set[str], peer_python: Path, weights: Path, folder: Path) -> dict[str, Worker]:
    commands = {
        "stylecore": ([sys.executable, "-m", "bench.peers", "--worker", "stylecore", str(weights)], {}),
        "stylecore-glibc": ([sys.executable, "-m", "bench.peers", "--worker", "stylecore-glibc", str(weights)], {}),
        "neural-style": ([str(peer_python), "-m", "bench.peer_workers", "neural-style", str(weights)], {}),
        "neural-style-retained": ([str(peer_python), "-m", "bench.peer_workers", "neural-style", str(weights)],
                                  RETAINED_HEAP),
        "pystiche": ([str(peer_python), "-m", "bench.peer_workers", "pystiche", str(weights)], {}),
    }
    return {name: Worker(name, *commands[name], folder / f"{name}.log") for name in sorted(names)}


def write_inputs(folder: Path, size: int, normalization: Normalization) -> Path:
    """Caffe-space content, style, evaluation image and initial image at `size`, and the RGB pair."""
    content_rgb, style_rgb = demo_rgb(CONTENT, size), demo_rgb(STYLE, size)
    content, style = normalization(content_rgb), normalization(style_rgb)
    noise = torch.randn(content.shape, generator=torch.Generator().manual_seed(0))
    init = (torch.randn(1, 3, *content.shape[-2:], generator=torch.Generator().manual_seed(PAPER.seed))
            * PAPER.init_noise / 255.0 / normalization.std)  # as Stylizer draws it
    path = folder / f"inputs-{size}.pt"
    torch.save({"content": content, "style": style, "image": content + 8 * noise, "init": init,
                "content_rgb": content_rgb, "style_rgb": style_rgb}, path)
    return path


@dataclass
class CaseResult:
    kind: str
    size: int
    columns: list[Column]
    seconds: dict[str, list[float]]
    peaks: dict[str, int]
    losses: dict[str, float]
    gradient_differences: dict[str, float]
    load: str

    def median(self, label: str) -> float:
        return statistics.median(self.seconds[label])

    def ratio(self, label: str, reference: str) -> float | None:
        """Median over rounds of this column's seconds over the reference's in the same round."""
        if reference not in self.seconds:
            return None
        return statistics.median(a / b for a, b in zip(self.seconds[label], self.seconds[reference], strict=True))


def measure_case(workers: dict[str, Worker], kind: str, size: int, inputs: Path, rounds: int,
                 folder: Path) -> CaseResult:
    """Interleaved rounds of one evaluation per column; round 0 warms up and records loss and gradient."""
    columns = [column for column in COLUMNS if kind in column.kinds and column.worker in workers]
    case = case_spec(kind, size, inputs)
    for name in dict.fromkeys(column.worker for column in columns):
        workers[name].ask("setup", case=case, variants=[c.variant for c in columns if c.worker == name])
    seconds: dict[str, list[float]] = {column.label: [] for column in columns}
    peaks = {column.label: 0 for column in columns}
    losses: dict[str, float] = {}
    gradients: dict[str, Path] = {}
    for number in range(rounds + 1):
        shift = number % len(columns)
        for index, column in enumerate(columns[shift:] + columns[:shift]):
            grad_path = folder / f"grad-{kind}-{size}-{index}.pt" if number == 0 else None
            reply = workers[column.worker].ask("eval", variant=column.variant,
                                               grad_path=None if grad_path is None else str(grad_path))
            if grad_path is not None:
                losses[column.label], gradients[column.label] = reply["loss"], grad_path
            else:
                seconds[column.label].append(reply["seconds"])
                peaks[column.label] = max(peaks[column.label], reply["peak_rss"])
        print(f"{kind} {size}/{size} round {number}: done, load {load_average()}", flush=True)
    for name in dict.fromkeys(column.worker for column in columns):
        workers[name].ask("drop")
    reference_label = "stylecore exact" if "stylecore exact" in gradients else "stylecore default"
    reference = torch.load(gradients[reference_label])
    differences = {label: float((torch.load(path) - reference).norm() / reference.norm())
                   for label, path in gradients.items()}
    return CaseResult(kind, size, columns, seconds, peaks, losses, differences, load_average())


@dataclass
class RunResult:
    kind: str
    size: int
    iterations: int
    column: Column
    reply: dict[str, Any]
    out: Path
    objective: LossTerms | None = None


def whole_runs(workers: dict[str, Worker], kind: str, size: int, iterations: int, inputs: Path,
               folder: Path) -> list[RunResult]:
    """One whole run per system, one after the other, each after an untimed 2-iteration warm-up run.

    (A process's first synthesis at a size ran several seconds slower, whatever the system.)
    """
    results = []
    for column in RUN_COLUMNS[kind]:
        if column.worker not in workers:
            continue
        out = folder / f"run-{kind}-{column.worker}-{column.variant.replace(' ', '_')}.pt"
        for count in (2, iterations):
            reply = workers[column.worker].ask("run", case=case_spec(kind, size, inputs), variant=column.variant,
                                               iterations=count, out=str(out))
        print(f"run {kind} {size}: {column.label}: {reply['seconds']:.1f} s, load {load_average()}", flush=True)
        results.append(RunResult(kind, size, iterations, column, reply, out))
    return results


def common_objective(extractor: VGGFeatures, result: RunResult, inputs: Path) -> LossTerms:
    """stylecore's exact objective of a run's returned image, clamped to RGB 0..1: the same for every system."""
    saved = torch.load(result.out, weights_only=True)
    image = saved["image"]
    if saved["space"] == "caffe":
        image = extractor.normalization.inverse(image).clamp(0, 1)
    tensors = torch.load(inputs, weights_only=True)
    params = PAPER.with_overrides(**KINDS[result.kind])
    return exact_objective(extractor, image, tensors["content_rgb"], tensors["style_rgb"], params)


def ratio_text(value: float | None, precision: int = 2) -> str:
    return "—" if value is None else f"{value:.{precision}f}x"


def summary_rows(cases: list[CaseResult]) -> tuple[list[str], list[list[str]]]:
    """The issue's table: stylecore default in seconds, every other column as a paired ratio to it."""
    labels = [column.label for column in COLUMNS if any(column in case.columns for case in cases)]
    rows = []
    for case in cases:
        row = [f"{KIND_LABELS[case.kind]}, {case.size}/{case.size}"]
        for label in labels:
            if label not in case.seconds:
                row.append("=" if label == "stylecore exact" else "—")
            elif label == "stylecore default":
                row.append(f"{case.median(label):.2f} s")
            else:
                cell = ratio_text(case.ratio(label, "stylecore default"))
                versus_exact = case.ratio(label, "stylecore exact")
                if versus_exact is not None and label != "stylecore exact":
                    cell += f" ({versus_exact:.2f}x vs exact)"
                row.append(cell)
        rows.append(row)
    return ["per loss evaluation", *labels], rows


DETAIL_HEADER = ["case", "system", "median s", "range s", "vs stylecore default", "vs stylecore exact", "peak RSS",
                 "objective at the test image (vs stylecore exact)", "gradient vs stylecore exact", "load after"]


def detail_rows(cases: list[CaseResult]) -> list[list[str]]:
    rows = []
    for case in cases:
        reference = "stylecore exact" if "stylecore exact" in case.losses else "stylecore default"
        for column in case.columns:
            label = column.label
            loss_difference = case.losses[label] / case.losses[reference] - 1
            rows.append([f"{case.kind} {case.size}/{case.size}", label, f"{case.median(label):.3f}",
                         f"{min(case.seconds[label]):.3f}-{max(case.seconds[label]):.3f}",
                         ratio_text(case.ratio(label, "stylecore default")),
                         ratio_text(case.ratio(label, "stylecore exact")), gib(case.peaks[label]),
                         f"{case.losses[label]:.6g} ({loss_difference:+.2e})",
                         f"{case.gradient_differences[label]:.1e}", case.load])
    return rows


def run_rows(runs: list[RunResult]) -> list[list[str]]:
    rows = []
    for run in runs:
        reference = next(r for r in runs if r.kind == run.kind and r.column.label == "stylecore default")
        assert run.objective is not None and reference.objective is not None
        reply, terms = run.reply, run.objective
        rows.append([f"{run.kind} 1 level x {run.iterations} at {run.size}", run.column.label,
                     f"{reply['seconds']:.1f}", f"{reply['evaluations']} / {reply['updates']}",
                     f"{reply['seconds'] / reply['evaluations']:.3f}",
                     f"{reply['seconds'] / reference.reply['seconds']:.2f}x", gib(reply["peak_rss"]),
                     f"{terms.total:.6g}", f"{terms.total / reference.objective.total - 1:+.2%}",
                     f"{terms.global_:.4g}", f"{terms.local:.4g}", f"{terms.content:.4g}"])
    return rows


def allocator_lines(cases: list[CaseResult]) -> list[str]:
    """What the retained-heap setting contributes to stylecore's Gatys lead over neural-style."""
    lines = []
    for case in cases:
        needed = ("neural-style 0.5.7", "stylecore, glibc allocator", "neural-style, retained heap")
        if case.kind != "gatys" or not all(label in case.seconds for label in needed):
            continue
        versus = {label: case.ratio(label, "stylecore default") or 0.0 for label in needed}
        lead = versus["neural-style 0.5.7"] - 1
        share = (f"the retained heap is {(versus[needed[1]] - 1) / lead:.0%} of the lead" if lead > 0
                 else "stylecore has no lead here")
        lines.append(f"Gatys {case.size}/{case.size}: neural-style takes {versus['neural-style 0.5.7']:.2f}x "
                     f"stylecore's time; stylecore with glibc's default allocator {versus[needed[1]]:.2f}x, so "
                     f"{share}; neural-style given the same setting (environment variables) {versus[needed[2]]:.2f}x")
    return lines


def setup_venv(venv: Path) -> None:
    """Create the peers' virtualenv with this environment's torch and torchvision (from local disk) and the peers."""
    import torchvision

    base_python = getattr(sys, "_base_executable", sys.executable)
    pins = [f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}",
            *PEER_PINS]
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", *pins]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="create the peers' virtualenv and stop")
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per case, after one warm-up")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="synthesis = style long side")
    parser.add_argument("--kinds", nargs="*", choices=ALL, default=list(ALL))
    parser.add_argument("--runs", nargs="*", choices=sorted(RUN_COLUMNS), default=sorted(RUN_COLUMNS))
    parser.add_argument("--gatys-run", type=int, nargs=2, default=[512, 50], metavar=("SIZE", "ITERATIONS"))
    parser.add_argument("--mrf-run", type=int, nargs=2, default=[256, 100], metavar=("SIZE", "ITERATIONS"))
    parser.add_argument("--workdir", type=Path, help="weights, inputs, logs, returned images (default: a new temp dir)")
    parser.add_argument("--worker", choices=["stylecore", "stylecore-glibc"], help=argparse.SUPPRESS)
    parser.add_argument("weights", nargs="?", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    if args.worker:
        serve(lambda: StylecoreWorker(args.weights, retain_memory=args.worker == "stylecore"))
        return
    if args.setup:
        setup_venv(args.peers_venv)
        return
    peer_python = args.peers_venv / "bin" / "python"
    if not peer_python.exists():
        sys.exit(f"{peer_python} not found: create the peers' virtualenv first with `python -m bench.peers --setup`")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="stylebatch-peers-"))
    folder.mkdir(parents=True, exist_ok=True)
    print_machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    print(f"stylecore at {commit.stdout.strip() or 'unknown commit'}; peers' python {peer_python}; "
          f"work folder {folder}; {args.rounds} rounds after a warm-up", flush=True)
    weights = folder / WEIGHTS_FILE
    torch.save({f"features.{key}": value.contiguous() for key, value in load_weights("caffe").state_dict.items()},
               weights)
    normalization = Normalization("caffe")
    run_sizes = {"gatys": args.gatys_run, "mrf": args.mrf_run}
    sizes = sorted({*args.sizes, *(run_sizes[kind][0] for kind in args.runs)})
    inputs = {size: write_inputs(folder, size, normalization) for size in sizes}
    needed = {column.worker for column in COLUMNS if set(column.kinds) & set(args.kinds)}
    needed |= {column.worker for kind in args.runs for column in RUN_COLUMNS[kind]}
    workers = start_workers(needed, peer_python, weights, folder)
    try:
        for name, worker in workers.items():
            hello = worker.ask("hello")
            if hello["torch"] != torch.__version__:
                raise RuntimeError(f"{name} runs torch {hello['torch']}, stylecore {torch.__version__}: "
                                   "recreate the peers' virtualenv (--setup)")
            print(f"{name}: {hello['version']}, torch {hello['torch']} with {hello['threads']} threads; "
                  f"weights: {hello['weights']}", flush=True)
        cases = []
        for kind in args.kinds:
            for size in args.sizes:
                cases.append(measure_case(workers, kind, size, inputs[size], args.rounds, folder))
                print_table(DETAIL_HEADER, detail_rows(cases[-1:]))  # so that a run cut short keeps its figures
        runs = [result for kind in args.runs
                for result in whole_runs(workers, kind, *run_sizes[kind], inputs[run_sizes[kind][0]], folder)]
    finally:
        for worker in workers.values():
            worker.close()
    extractor = VGGFeatures(load_weights("caffe"))
    for run in runs:
        run.objective = common_objective(extractor, run, inputs[run.size])
    print()
    print_table(*summary_rows(cases))
    print()
    print_table(DETAIL_HEADER, detail_rows(cases))
    for line in allocator_lines(cases):
        print(line)
    if runs:
        print()
        print_table(["whole run", "system", "seconds", "evaluations / updates", "s per evaluation",
                     "time vs stylecore", "peak RSS", "final objective (common)", "vs stylecore", "global",
                     "local", "content"], run_rows(runs))
    print(f"\nload average at the end: {load_average()}; work folder (logs, returned images): {folder}")


if __name__ == "__main__":
    main()
