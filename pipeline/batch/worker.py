"""What one worker does: hold a VGG-19 and turn manifest jobs into images and result records.

`RowProcessor` is plain Python; the pool wraps it in a Ray actor. A row's own problems
(missing or corrupt image, image too small or too large, storage errors, GPU out of
memory) become a failed record with a clear message; they never kill the worker.

Storage overlaps compute: the actor runs up to three `process` calls at once, in threads
(Ray's `max_concurrency`), and each call goes through three stages: read and decode the
inputs, synthesize, encode and write. Only the synthesis holds the device, behind a lock;
a second semaphore lets one row at a time read ahead. So while one row synthesizes, the
next one's images are read and decoded and the previous result is encoded and written,
and the device never waits on S3 as long as storage is faster than a synthesis. Threads
rather than separate stage actors keep the decoded images in the process that uses them
(no copy through Ray's object store) and need no extra scheduling; decoding, encoding and
boto3 release the GIL for their heavy parts.

torch and stylecore are imported only inside the worker process (in `RowProcessor`), so
that the driver, which imports this module for `job_record`, never loads torch.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PIL import Image

from pipeline.batch.manifest import Job
from pipeline.batch.records import job_record, output_metadata, utc_now
from pipeline.storage.secrets import redact
from pipeline.storage.store import AlreadyExists, Location, Storage, StorageError
from stylecore.imageio import encode_image

CONCURRENT_ROWS = 3  # rows in one worker at once: one reading, one synthesizing, one writing
CUDA_ALLOC_CONF = "expandable_segments:True"  # PYTORCH_CUDA_ALLOC_CONF of GPU workers: less fragmentation
CUDA_CONTEXT_BYTES = 1 << 30  # GPU memory a process needs outside torch's allocator (CUDA context, kernels)


def memory_fraction(gpu_share: float, total_bytes: int, context_bytes: int = CUDA_CONTEXT_BYTES) -> float:
    """The fraction of a GPU's memory that torch's allocator may use in a worker holding `gpu_share`
    of it: its share, less the memory its CUDA context takes outside the allocator, so that the
    workers sharing a GPU fit in it together."""
    return max(0.01, min(1.0, gpu_share - context_bytes / total_bytes))


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


class RowProcessor:
    """One VGG-19 on one device, reading inputs from and writing outputs to `storage`.

    Thread-safe: `process` may run in up to CONCURRENT_ROWS threads at once.
    """

    def __init__(self, storage: Storage, weights: str = "caffe", device: str = "auto",
                 threads: int | None = None, max_pixels: int | None = None,
                 count_attempt: Callable[[int], int] | None = None, max_attempts: int = 3,
                 gpu_share: float = 1.0, run_id: str = "", output_prefix: Location | None = None,
                 overwrite: bool = False) -> None:
        """`count_attempt(row)` records that a row starts its synthesis and returns how many times
        it has; a row started more than `max_attempts` times has killed its worker each time, and
        fails. `gpu_share`: the fraction of its GPU this worker holds (its memory cap). Outputs are
        labelled with `run_id` (see `pipeline.batch.records`), kept inside `output_prefix` through
        symlinks too, and never replace an existing file or object unless `overwrite`."""
        import torch

        from stylecore import DEFAULT_MAX_PIXELS, Stylizer

        if threads:
            torch.set_num_threads(threads)
        self.storage, self.weights = storage, weights
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self.count_attempt, self.max_attempts = count_attempt, max_attempts
        self.run_id, self.output_prefix, self.overwrite = run_id, output_prefix, overwrite
        self.stylizer = Stylizer(weights, device)
        self.memory_fraction = 1.0
        if self.stylizer.device.type == "cuda" and gpu_share < 1:
            total = torch.cuda.get_device_properties(self.stylizer.device).total_memory
            self.memory_fraction = memory_fraction(gpu_share, total)
            torch.cuda.set_per_process_memory_fraction(self.memory_fraction, self.stylizer.device)
        self.host = socket.gethostname()
        self.node = _ray_node_id()
        self._synthesis = threading.Lock()  # one synthesis at a time holds the device
        self._read_ahead = threading.Semaphore(1)  # one row at a time reads while another synthesizes

    def describe(self) -> dict[str, Any]:
        """Where this worker runs (also tells the driver that loading the network worked)."""
        import torch

        return {"host": self.host, "node": self.node, "device": str(self.stylizer.device), "pid": os.getpid(),
                "threads": torch.get_num_threads(), "memory_fraction": self.memory_fraction,
                "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}

    def process(self, job: Job) -> dict[str, Any]:
        """Stylize one job; always returns a result record (status ok or failed).

        started_at is when the worker began reading the row; finished_at - write_seconds -
        synthesis_seconds is when its synthesis began (all from one clock).
        """
        import torch

        from stylecore import ImageError

        record = job_record(job, self.weights) | {"worker_host": self.host, "worker_node": self.node,
                                                  "device": str(self.stylizer.device)}
        try:
            self._stylize(job, record)
        except (ImageError, StorageError) as error:
            record |= {"status": "failed", "error": redact(str(error))}
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()  # hand the failed row's blocks back before the next row
            record |= {"status": "failed", "error": f"GPU out of memory at size {job.params.size}; use a "
                                                    "smaller size, a larger --gpus-per-worker or a bigger GPU"}
        except Exception as error:  # a bug or an unforeseen input must fail the row, not the worker
            record |= {"status": "failed", "error": redact(f"{type(error).__name__}: {error}")}
        now = utc_now()
        record.setdefault("started_at", now)
        record.setdefault("finished_at", now)
        return record

    def _stylize(self, job: Job, record: dict[str, Any]) -> None:
        """The three stages of a row, filling `record`; raises on the row's own errors."""
        from stylecore import ImageTooSmallError

        with self._read_ahead:
            record["started_at"] = started = utc_now()
            content, style = self._load(job.content), self._load(job.style)
            loaded = utc_now()
            record["load_seconds"] = _seconds(started, loaded)
            self._synthesis.acquire()
            synthesis_started = utc_now()  # before the next row may start reading
        try:
            attempt = self.count_attempt(job.row) if self.count_attempt else 1
            if attempt > self.max_attempts:
                record |= {"status": "failed",
                           "error": f"the worker died while processing this row {attempt - 1} time(s) "
                                    "(killed, or out of memory?); not retried again"}
                return
            try:
                result = self.stylizer(content, style, job.params)
            except ImageTooSmallError as error:
                raise error.naming(job.content, job.style) from None
            synthesized = utc_now()
        finally:
            self._synthesis.release()
        losses = result.losses
        record |= {"synthesis_seconds": _seconds(synthesis_started, synthesized), "loss_global": losses.global_,
                   "loss_local": losses.local, "loss_content": losses.content, "loss_total": losses.total,
                   "evaluations": result.evaluations, "worse_than_start": result.worse_than_start,
                   "rejected_steps": result.rejected_steps}
        try:
            self.storage.write_bytes(job.output, encode_image(result.to_pil(), job.output.name),
                                     overwrite=self.overwrite, metadata=output_metadata(self.run_id, record),
                                     confine_to=self.output_prefix)
        except AlreadyExists:
            record |= {"status": "skipped", "error": "output exists: it appeared while this row ran (written by "
                                                     "something other than this run); pass --force to overwrite it"}
            return
        record["finished_at"] = written = utc_now()
        record |= {"status": "ok", "write_seconds": _seconds(synthesized, written)}

    def _load(self, location: Location) -> Image.Image:
        from stylecore import load_image

        return load_image(self.storage.read_bytes(location), name=str(location), max_pixels=self.max_pixels)


def _ray_node_id() -> str | None:
    """The Ray node this process runs on, None outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
