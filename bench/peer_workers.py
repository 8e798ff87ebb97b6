"""The worker side of `bench.peers`: one process per system, answering JSON lines on stdin/stdout.

`python -m bench.peer_workers neural-style|pystiche` runs inside the peers' own virtual
environment (`python -m bench.peers --setup`): it imports torch, torchvision, the peer and
`bench.machine`, never stylecore. `bench.peers` runs stylecore's worker with the same loop
(`serve`) and the same requests:

- `hello`: the system's version, torch version and threads, and the weight check;
- `setup` a case (objective, size, the variants to hold), `eval` one variant (timed loss
  evaluations, forward + backward), `drop` the case;
- `run` one whole synthesis, saving the returned image for the common objective;
- `quit`.

Each peer gets stylecore's converted Caffe VGG-19 (`weights.pth`, keyed like torchvision's
`features.N.weight`) through its OWN loader, and every conv layer it loaded is compared
with that file by `torch.equal`: neural-style's `loadCaffemodel` reads the file itself
(`disable_check`, because the file has no classifier); pystiche downloads through
`torch.hub.load_state_dict_from_url`, which this process answers from the file for
pystiche's own Caffe VGG-19 URL only, then loads strictly with its name mapping.
pystiche 1.0.1 imports `model_urls` from torchvision's alexnet and vgg modules, which
torchvision 0.13+ removed: they are put back (the same URLs, from the weights enums)
in this process before pystiche is imported. Inputs arrive already in Caffe space, so
neither peer's preprocessing runs (neural-style's scales by 256, not 255).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn

from bench.machine import peak_rss_bytes, reset_peak_rss

Case = dict[str, Any]  # what bench.peers.case_spec sends: kind, size, inputs, alphas, layers, lbfgs_history


def serve(make_system: Callable[[], Any]) -> None:
    """Answer requests `{"op": name, ...}` from stdin with `system.name(**fields)`, one JSON line each.

    Replies go to the original stdout; whatever the system prints, from its construction
    on, goes to stderr (the driver's log of this worker).
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    system = make_system()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = getattr(system, op)(**request)
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")


def compare_convs(convs: list[nn.Conv2d], weights: Path) -> str:
    """Check that `convs` (in network order) hold exactly the file's conv weights and biases."""
    reference = torch.load(weights, map_location="cpu", weights_only=True)
    indices = sorted({int(key.split(".")[1]) for key in reference})[: len(convs)]
    differing = [index for conv, index in zip(convs, indices, strict=True)
                 if not (torch.equal(conv.weight, reference[f"features.{index}.weight"])
                         and torch.equal(conv.bias, reference[f"features.{index}.bias"]))]
    if differing:
        raise RuntimeError(f"conv layers at features indices {differing} differ from stylecore's weights")
    return f"{len(convs)}/{len(convs)} conv layers equal to stylecore's (weights and biases, torch.equal)"


def timed_evaluations(evaluate: Callable[[], float], count: int) -> dict[str, float]:
    """Seconds per evaluation over `count` consecutive calls, the last loss, and the peak RSS meanwhile."""
    reset_peak_rss()
    started = time.perf_counter()
    for _ in range(count):
        loss = evaluate()
    seconds = (time.perf_counter() - started) / count
    return {"seconds": seconds, "evaluations": count, "loss": loss, "peak_rss": peak_rss_bytes()}


def save_gradient(image: torch.Tensor, path: str | None) -> None:
    if path is not None:
        assert image.grad is not None
        torch.save(image.grad.detach().clone(), path)


class LBFGSUpdates:
    """Counts the updates of every torch.optim.LBFGS stepped while active: what a run really did."""

    def __enter__(self) -> LBFGSUpdates:
        self.optimizers: list[torch.optim.LBFGS] = []
        self._step = torch.optim.LBFGS.step
        step = self._step

        def counting_step(optimizer: torch.optim.LBFGS, closure: Callable[[], Any]) -> Any:
            if all(optimizer is not seen for seen in self.optimizers):
                self.optimizers.append(optimizer)
            return step(optimizer, closure)

        torch.optim.LBFGS.step = counting_step  # type: ignore[method-assign]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        torch.optim.LBFGS.step = self._step  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        return sum(int(optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0))
                   for optimizer in self.optimizers)


def load_inputs(case: Case) -> dict[str, torch.Tensor]:
    """The case's Caffe-space tensors: content, style, image (evaluated), init (whole runs)."""
    return torch.load(case["inputs"], map_location="cpu", weights_only=True)


class _Captured(Exception):
    """Carries neural-style's evaluation closure out of its main()."""


class _CaptureLBFGS(torch.optim.LBFGS):
    def step(self, closure: Any) -> Any:  # type: ignore[override]
        raise _Captured(closure)


class _NoFile:
    def save(self, filename: str) -> None:
        """neural-style saves its output here; the tensor was kept instead."""


class NeuralStyle:
    """neural-style 0.5.7 (ProGamerGov's neural-style-pt) driven through its own main().

    Its command-line parameters are set on the module's `params`; its `preprocess` hands
    back this case's Caffe-space tensors by name and its `deprocess` keeps the output
    tensor. For evaluations, main() runs until it asks for the optimizer and its own
    evaluation closure `feval` is taken from there.
    """

    def __init__(self, weights: Path) -> None:
        sys.argv = ["neural-style"]  # the module parses the command line when imported
        self.ns = importlib.import_module("neural_style.neural_style")
        # It picks the architecture from substrings ("vgg", "19", "sod", "nin", ...) of the
        # whole model path: give it the bare file name, from the file's folder.
        self.weights = weights.resolve()
        os.chdir(self.weights.parent)
        self.tensors: dict[str, torch.Tensor] = {}
        self.output: torch.Tensor | None = None
        self.ns.preprocess = lambda name, size: self.tensors[name].clone()
        self.ns.deprocess = self._keep_output
        self.feval: Callable[[], torch.Tensor] | None = None
        self.image: torch.Tensor | None = None

    def _keep_output(self, tensor: torch.Tensor) -> _NoFile:
        self.output = tensor.detach().clone()
        return _NoFile()

    def hello(self) -> dict[str, Any]:
        cnn, _ = self.ns.loadCaffemodel(self.weights.name, "max", "c", True)
        convs = [module for module in cnn if isinstance(module, nn.Conv2d)]
        return {"version": importlib.metadata.version("neural-style"), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "weights": compare_convs(convs, self.weights)}

    def _configure(self, case: Case, iterations: int, start: str) -> None:
        """neural-style's options for `case`: our weights, no TV, Gatys layers and weights."""
        if case["alpha_local"] > 0:
            raise ValueError("neural-style has no MRF loss")
        params = self.ns.params
        params.content_image, params.style_image, params.init, params.init_image = "content", "style", "image", start
        params.image_size, params.style_scale, params.style_blend_weights = case["size"], 1.0, None
        params.gpu, params.backend, params.pooling, params.seed = "c", "nn", "max", -1
        params.model_file, params.disable_check = self.weights.name, True
        params.content_weight, params.style_weight, params.tv_weight = case["alpha_content"], case["alpha_global"], 0.0
        params.normalize_weights, params.original_colors = False, 0
        params.content_layers, params.style_layers = case["content_layer"], ",".join(case["global_layers"])
        params.optimizer, params.num_iterations = "lbfgs", iterations
        params.lbfgs_num_correction = case["lbfgs_history"]
        params.print_iter, params.save_iter, params.output_image = 0, 0, os.devnull

    def setup(self, case: Case, variants: list[str]) -> dict[str, Any]:
        self.tensors = load_inputs(case)
        self._configure(case, 10**9, "image")
        setup_optimizer = self.ns.setup_optimizer
        self.ns.setup_optimizer = lambda img: (_CaptureLBFGS([img]), 1)
        try:
            self.ns.main()
        except _Captured as captured:
            self.feval = captured.args[0]
        finally:
            self.ns.setup_optimizer = setup_optimizer
        assert self.feval is not None
        cells = dict(zip(self.feval.__code__.co_freevars, self.feval.__closure__ or (), strict=True))
        self.image = cells["img"].cell_contents
        return {}

    def eval(self, variant: str, grad_path: str | None = None) -> dict[str, float]:
        assert self.feval is not None and self.image is not None
        feval = self.feval
        figures = timed_evaluations(lambda: float(feval().item()), 1)
        save_gradient(self.image, grad_path)
        return figures

    def drop(self) -> dict[str, Any]:
        self.feval = self.image = None
        self.tensors = {}
        return {}

    def run(self, case: Case, variant: str, iterations: int, out: str) -> dict[str, Any]:
        self.tensors = load_inputs(case)
        self._configure(case, iterations, "init")
        evaluations = [0]
        content_forward = self.ns.ContentLoss.forward

        def counting_forward(module: nn.Module, features: torch.Tensor) -> torch.Tensor:
            evaluations[0] += module.mode == "loss"
            return content_forward(module, features)

        self.ns.ContentLoss.forward = counting_forward
        reset_peak_rss()
        try:
            with LBFGSUpdates() as updates:
                started = time.perf_counter()
                self.ns.main()
                seconds = time.perf_counter() - started
        finally:
            self.ns.ContentLoss.forward = content_forward
        torch.save({"image": self.output, "space": "caffe"}, out)
        return {"seconds": seconds, "evaluations": evaluations[0], "updates": updates.count,
                "peak_rss": peak_rss_bytes()}


def restore_torchvision_model_urls() -> None:
    """Give torchvision's alexnet and vgg modules the `model_urls` dicts pystiche 1.0.1 imports."""
    models = importlib.import_module("torchvision.models")
    vgg = importlib.import_module("torchvision.models.vgg")
    alexnet = importlib.import_module("torchvision.models.alexnet")
    archs = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
    vgg.model_urls = {arch: getattr(models, f"{arch.upper()}_Weights").IMAGENET1K_V1.url for arch in archs}
    alexnet.model_urls = {"alexnet": models.AlexNet_Weights.IMAGENET1K_V1.url}


class Pystiche:
    """pystiche 1.0.1: its VGG-19 multi-layer encoder with Caffe weights and its losses.

    Variants: "frozen" (encoder parameters requires_grad False, as neural-style and
    stylecore have theirs) and "shipped" (as `vgg19_multi_layer_encoder()` returns it:
    trainable, so every backward also computes the conv weights' gradients).
    """

    def __init__(self, weights: Path) -> None:
        restore_torchvision_model_urls()
        self.pystiche = importlib.import_module("pystiche")
        self.weights = weights
        caffe_url = importlib.import_module("pystiche.enc.models.vgg").select_url("vgg19", "caffe")
        download = torch.hub.load_state_dict_from_url

        def offline(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            if url != caffe_url:
                return download(url, *args, **kwargs)
            return torch.load(self.weights, map_location="cpu", weights_only=True)

        torch.hub.load_state_dict_from_url = offline
        self.variants: dict[str, tuple[nn.Module, torch.Tensor]] = {}

    def encoder(self, frozen: bool) -> nn.Module:
        """pystiche's Caffe VGG-19, loaded by its own loader from `weights.pth`, without preprocessing."""
        encoder = self.pystiche.enc.vgg19_multi_layer_encoder(framework="caffe", internal_preprocessing=False)
        return encoder.requires_grad_(False) if frozen else encoder

    def hello(self) -> dict[str, Any]:
        convs = [module for module in self.encoder(True).children() if isinstance(module, nn.Conv2d)]
        return {"version": importlib.metadata.version("pystiche"), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "weights": compare_convs(convs, self.weights)}

    def criterion(self, case: Case, encoder: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
        """The case's objective as a pystiche PerceptualLoss, weighted to equal stylecore's (bench.peers)."""
        loss = self.pystiche.loss
        channels = {name.replace("conv", "relu"): module.out_channels for name, module in encoder.named_children()
                    if isinstance(module, nn.Conv2d)}
        style: list[tuple[str, nn.Module]] = []
        if case["alpha_global"] > 0:
            layers = case["global_layers"]
            style.append(("global", loss.MultiLayerEncodingLoss(
                encoder, layers, lambda layer_encoder, weight: loss.GramLoss(layer_encoder, score_weight=weight),
                layer_weights=[case["alpha_global"] / channels[layer] ** 2 for layer in layers])))
        if case["alpha_local"] > 0:
            local = case["local_layer"]
            with torch.no_grad():
                height, width = encoder.encode(tensors["image"], (local,))[0].shape[-2:]
            size = case["patch_size"]
            patches = (height - size + 1) * (width - size + 1)
            style.append(("local", loss.MRFLoss(encoder.extract_encoder(local), size, stride=1,
                                                score_weight=case["alpha_local"] * patches * channels[local] / 2)))
        content = loss.FeatureReconstructionLoss(encoder.extract_encoder(case["content_layer"]),
                                                 score_weight=case["alpha_content"])
        criterion = loss.PerceptualLoss(content, loss.LossContainer(style))
        criterion.set_content_image(tensors["content"])
        criterion.set_style_image(tensors["style"])
        return criterion

    def setup(self, case: Case, variants: list[str]) -> dict[str, Any]:
        tensors = load_inputs(case)
        for variant in variants:
            criterion = self.criterion(case, self.encoder(variant == "frozen"), tensors)
            self.variants[variant] = (criterion, tensors["image"].clone().requires_grad_(True))
        return {}

    def eval(self, variant: str, grad_path: str | None = None) -> dict[str, float]:
        criterion, image = self.variants[variant]

        def evaluate() -> float:  # pystiche.optim.image_optimization's closure
            image.grad = None
            loss = criterion(image)
            loss.backward()
            return float(loss)

        figures = timed_evaluations(evaluate, 1)
        save_gradient(image, grad_path)
        return figures

    def drop(self) -> dict[str, Any]:
        self.variants.clear()
        return {}

    def run(self, case: Case, variant: str, iterations: int, out: str) -> dict[str, Any]:
        tensors = load_inputs(case)
        criterion = self.criterion(case, self.encoder(variant == "frozen"), tensors)
        evaluations = [0]
        criterion.register_forward_pre_hook(lambda module, args: evaluations.__setitem__(0, evaluations[0] + 1))
        history = case["lbfgs_history"]

        def optimizer(image: torch.Tensor) -> torch.optim.LBFGS:  # pystiche's default, with our history
            return torch.optim.LBFGS([image.requires_grad_(True)], lr=1.0, max_iter=1, history_size=history)

        reset_peak_rss()
        with LBFGSUpdates() as updates:
            started = time.perf_counter()
            output = self.pystiche.optim.image_optimization(tensors["init"].clone(), criterion, optimizer,
                                                            num_steps=iterations, quiet=True)
            seconds = time.perf_counter() - started
        torch.save({"image": output, "space": "caffe"}, out)
        return {"seconds": seconds, "evaluations": evaluations[0], "updates": updates.count,
                "peak_rss": peak_rss_bytes()}


PEERS: dict[str, Callable[[Path], Any]] = {"neural-style": NeuralStyle, "pystiche": Pystiche}


def main() -> None:
    """`python -m bench.peer_workers PEER WEIGHTS`: serve requests for one peer."""
    peer, weights = sys.argv[1], Path(sys.argv[2])
    serve(lambda: PEERS[peer](weights))


if __name__ == "__main__":
    main()
