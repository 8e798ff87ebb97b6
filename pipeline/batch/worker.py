"""What one worker does: hold a VGG-19 and turn manifest jobs into images and result records.

`RowProcessor` is plain Python; the runner wraps it in a Ray actor. A row's own problems
(missing or corrupt image, image too small or too large, storage errors, GPU out of
memory) become a failed record with a clear message; they never kill the worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

import torch
from PIL import Image

from pipeline.batch.manifest import Job
from pipeline.batch.naming import params_fingerprint
from pipeline.storage.secrets import redact
from pipeline.storage.store import Location, Storage, StorageError
from stylecore import DEFAULT_MAX_PIXELS, ImageError, ImageTooSmallError, Stylizer, load_image
from stylecore.imageio import encode_image

STYLEBATCH_VERSION = version("stylebatch")


def job_record(job: Job, weights: str) -> dict[str, Any]:
    """The results-table columns that describe a job: inputs, output and every parameter."""
    params = job.params
    return {
        "row": job.row, "content": str(job.content), "style": str(job.style), "output": str(job.output),
        "alpha_global": params.alpha_global, "alpha_local": params.alpha_local,
        "alpha_content": params.alpha_content, "tv_weight": params.tv_weight, "size": params.size,
        "levels": params.levels, "iters": params.iterations, "seed": params.seed,
        "match_every": params.matching.match_every, "search_dim": params.matching.search_dim,
        "search_candidates": params.matching.search_candidates, "search_step": params.matching.search_step,
        "weights": weights,
        "params": json.dumps(params_fingerprint(params), sort_keys=True), "stylebatch_version": STYLEBATCH_VERSION,
    }


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class RowProcessor:
    """One VGG-19 on one device, reading inputs from and writing outputs to `storage`."""

    def __init__(self, storage: Storage, weights: str = "caffe", device: str = "auto",
                 threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 count_attempt: Callable[[int], int] | None = None, max_attempts: int = 3) -> None:
        """`count_attempt(row)` records that a row starts and returns how many times it has started;
        a row started more than `max_attempts` times has killed its worker each time, and fails."""
        if threads:
            torch.set_num_threads(threads)
        self.storage, self.weights, self.max_pixels = storage, weights, max_pixels
        self.count_attempt, self.max_attempts = count_attempt, max_attempts
        self.stylizer = Stylizer(weights, device)
        self.host = socket.gethostname()

    def describe(self) -> dict[str, Any]:
        """Where this worker runs (also tells the driver that loading the network worked)."""
        return {"host": self.host, "device": str(self.stylizer.device), "pid": os.getpid(),
                "threads": torch.get_num_threads()}

    def process(self, job: Job) -> dict[str, Any]:
        """Stylize one job; always returns a result record (status ok or failed)."""
        record = job_record(job, self.weights) | {"worker_host": self.host,
                                                    "device": str(self.stylizer.device),
                                                    "started_at": utc_now()}
        attempt = self.count_attempt(job.row) if self.count_attempt else 1
        if attempt > self.max_attempts:
            return record | {"status": "failed", "finished_at": utc_now(),
                             "error": f"the worker died while processing this row {attempt - 1} time(s) "
                                      "(killed, or out of memory?); not retried again"}
        clock = time.perf_counter()
        try:
            content, style = self._load(job.content), self._load(job.style)
            record["load_seconds"] = time.perf_counter() - clock
            clock = time.perf_counter()
            try:
                result = self.stylizer(content, style, job.params)
            except ImageTooSmallError as error:
                raise error.naming(job.content, job.style) from None
            record["synthesis_seconds"] = time.perf_counter() - clock
            clock = time.perf_counter()
            self.storage.write_bytes(job.output, encode_image(result.to_pil(), job.output.name))
            record["write_seconds"] = time.perf_counter() - clock
            losses = result.losses
            record |= {"status": "ok", "loss_global": losses.global_, "loss_local": losses.local,
                       "loss_content": losses.content, "loss_total": losses.total,
                       "evaluations": result.evaluations}
        except (ImageError, StorageError) as error:
            record |= {"status": "failed", "error": redact(str(error))}
        except torch.cuda.OutOfMemoryError:
            record |= {"status": "failed", "error": f"GPU out of memory at size {job.params.size}; "
                                                    "use a smaller size or a GPU with more memory"}
        except Exception as error:  # a bug or an unforeseen input must fail the row, not the worker
            record |= {"status": "failed", "error": redact(f"{type(error).__name__}: {error}")}
        record["finished_at"] = utc_now()
        return record

    def _load(self, location: Location) -> Image.Image:
        return load_image(self.storage.read_bytes(location), name=str(location), max_pixels=self.max_pixels)
