"""One timing per stage, each on the functions the toolkit itself runs: the synthetic
generator, prepare-coco, the training Dataset, the decoder (against a per-joint loop, the shape
of the earlier PoseKit decoder), CPU inference (PyTorch eager and onnxruntime) and URL fetching
(against a slow local server)."""

from __future__ import annotations

import functools
import json
import math
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pkmodel.config import PrepareConfig, SyntheticConfig
from pkmodel.data.dataset import PoseDataset
from pkmodel.data.loader import make_loader
from pkmodel.data.prepare import prepare_split, worker_count
from pkmodel.data.synthetic.generate import generate
from pkmodel.datatools.fetch import fetch_urls
from pkmodel.export.common import normalise_pixels, sample_input
from pkmodel.export.onnx import ONNX_MIN_OPSET, onnx_session, write_onnx
from pkmodel.model.decode import Decoded, DecodeSettings, decode_batch, decode_batch_torch
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model
from pkmodel.tools.benchmark.timing import median_ms, time_per_frame


def random_outputs(
    n: int, k: int, grid: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random float32 network outputs (heatmaps, centers in [0, 1); regs +-grid/2; offsets [0, 1)).

    For the decoder's benchmark and tests.
    """
    rng = np.random.default_rng(seed)
    heat = rng.random((n, k, grid, grid), dtype=np.float32)
    cen = rng.random((n, 1, grid, grid), dtype=np.float32)
    regs = ((rng.random((n, 2 * k, grid, grid)) - 0.5) * grid).astype(np.float32)
    offs = rng.random((n, 2 * k, grid, grid), dtype=np.float32)
    return heat, cen, regs, offs


def benchmark_decoder(
    grid: int = 48,
    num_joints: int = 17,
    batch: int = 64,
    min_seconds: float = 0.5,
    torch_device: str | None = None,
) -> dict[str, float]:
    """Microseconds per frame: the vectorised decoder (1 frame, a batch) against
    ``decode_per_joint``, a loop over samples and joints with NumPy argmaxes per joint (the shape
    of the earlier PoseKit decoder). With ``torch_device`` ("cpu", "cuda", ...) the torch twin's
    batch is timed too (``torch_batch_us``, synchronised, results left on the device).
    """
    outs = random_outputs(batch, num_joints, grid)
    one = tuple(a[:1] for a in outs)
    result = {
        "grid": float(grid),
        "batch": float(batch),
        "single_us": time_per_frame(lambda: decode_batch(one), 1, min_seconds),
        "batch_us": time_per_frame(lambda: decode_batch(outs), batch, min_seconds),
        "reference_per_joint_us": time_per_frame(
            lambda: decode_per_joint(outs), batch, min_seconds
        ),
    }
    if torch_device is not None:
        dev = torch.device(torch_device)
        tensors = [torch.from_numpy(a).to(dev) for a in outs]

        def run_torch() -> None:
            decode_batch_torch(tensors)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        result["torch_batch_us"] = time_per_frame(run_torch, batch, min_seconds)
    result["speedup_batch_vs_per_joint"] = result["reference_per_joint_us"] / result["batch_us"]
    return result


def decode_per_joint(
    outputs: Sequence[np.ndarray], settings: DecodeSettings = DecodeSettings()
) -> Decoded:
    """Loop over samples and joints, NumPy over each h x w map (the earlier decoder's shape)."""
    heatmaps, centers, regs, offsets = outputs
    stride, score_threshold, prior_offset = (
        settings.stride, settings.score_threshold, settings.prior_offset
    )  # fmt: skip
    n, k, h, w = heatmaps.shape
    ys, xs = np.mgrid[0:h, 0:w]
    dist = np.sqrt((xs - (w - 1) / 2.0) ** 2 + (ys - (h - 1) / 2.0) ** 2)
    prior = (1.0 / (dist + prior_offset)).astype(np.float32)
    keypoints = np.zeros((n, k, 2))
    scores = np.zeros((n, k))
    center = np.zeros((n, 2), np.int64)
    cells = np.zeros((n, k, 2), np.int64)
    for i in range(n):
        cy, cx = np.unravel_index(np.argmax(centers[i, 0] * prior), (h, w))
        center[i] = (cx, cy)
        for j in range(k):
            rx = min(max(cx + math.floor(float(regs[i, 2 * j, cy, cx]) + 0.5), 0), w - 1)
            ry = min(max(cy + math.floor(float(regs[i, 2 * j + 1, cy, cx]) + 0.5), 0), h - 1)
            denom = (np.sqrt((xs - rx) ** 2 + (ys - ry) ** 2) + prior_offset).astype(np.float32)
            jy, jx = np.unravel_index(np.argmax(heatmaps[i, j] / denom), (h, w))
            scores[i, j] = heatmaps[i, j, jy, jx]
            keypoints[i, j] = (
                (jx + float(offsets[i, 2 * j, jy, jx])) * stride,
                (jy + float(offsets[i, 2 * j + 1, jy, jx])) * stride,
            )
            cells[i, j] = (jx, jy)
    return Decoded(keypoints, scores, scores >= score_threshold, center, cells)


@dataclass
class LatencyReport:
    """Median CPU latency at batch 1, PyTorch eager vs onnxruntime (milliseconds)."""

    input_size: int
    width_mult: float
    torch_ms: float
    onnxruntime_ms: float
    torch_threads: int
    runs: int

    def summary(self) -> str:
        return (
            f"input {self.input_size}, width {self.width_mult}, batch 1, {self.runs} runs, "
            f"{self.torch_threads} threads: PyTorch eager {self.torch_ms:.2f} ms, "
            f"onnxruntime {self.onnxruntime_ms:.2f} ms (median)"
        )


def benchmark_cpu_latency(
    model: torch.nn.Module,
    input_size: int,
    width_mult: float,
    runs: int = 50,
    warmup: int = 5,
    opset: int = ONNX_MIN_OPSET,
    onnx_path: Path | None = None,
    threads: int | None = None,
) -> LatencyReport:
    """Batch-1 CPU latency of the network in PyTorch eager mode and in onnxruntime.

    Both use ``threads`` CPU threads (default: torch's current setting). The ONNX model is
    ``onnx_path`` (an export of the same network) or a temporary export.
    """
    model = model.eval()
    previous = torch.get_num_threads()
    threads = threads or previous
    x = normalise_pixels(sample_input(input_size))
    xt = torch.from_numpy(x)
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            torch_ms = median_ms(lambda: model(xt), runs, warmup)
    finally:
        torch.set_num_threads(previous)
    with tempfile.TemporaryDirectory(prefix="pkmodel-bench-") as tmp:
        path = Path(onnx_path) if onnx_path else Path(tmp) / "model.onnx"
        if onnx_path is None:
            write_onnx(model, path, input_size, opset)
        session = onnx_session(path, threads=threads)
        onnx_ms = median_ms(
            lambda: session.run(None, {session.get_inputs()[0].name: x}), runs, warmup
        )
    return LatencyReport(input_size, width_mult, torch_ms, onnx_ms, threads, runs)


def benchmark_synthetic(
    n: int = 1000, size: tuple[int, int] = (256, 256), workers: int = 0, seed: int = 0
) -> dict[str, float]:
    """Time writing ``n`` training images of ``size`` (width, height) into a temporary folder."""

    def cpu() -> float:  # this process and its finished workers, user + system
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)  # fmt: skip
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory(prefix="pkmodel-synthetic-bench-") as tmp:
        spec = SyntheticConfig(num_train=n, num_val=0, width=size[0], height=size[1], seed=seed,
                               sequences=0, workers=workers)  # fmt: skip
        cpu0 = cpu()
        summary = generate(spec, Path(tmp), progress=False)
        cpu_s = cpu() - cpu0
    return {
        "images": float(n),
        "seconds": round(summary.seconds, 2),
        "images_per_s": round(n / summary.seconds, 1),
        "cpu_seconds": round(cpu_s, 2),  # on a busy machine, wall time hides what it costs
        "workers": float(summary.workers),
    }


def benchmark_prepare(
    images_dir: str | Path,
    annotations: str | Path,
    out_dir: str | Path,
    params: PrepareConfig,
    repeats: int = 2,
    replicate: int = 10,
) -> dict[str, float]:
    """Crops per second of a fresh prepare run (best of ``repeats``), and of a resumed one.

    The annotation file is repeated ``replicate`` times under new ids (same image files), so
    a small sample runs long enough to measure the steady state, pool start included.
    """
    out_dir = Path(out_dir)
    data = json.loads(Path(annotations).read_bytes())
    images, anns = [], []
    step_i = max(i["id"] for i in data["images"]) + 1
    step_a = max(a["id"] for a in data["annotations"]) + 1
    for r in range(replicate):
        images += [{**i, "id": i["id"] + r * step_i} for i in data["images"]]
        anns += [{**a, "id": a["id"] + r * step_a, "image_id": a["image_id"] + r * step_i}
                 for a in data["annotations"]]  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    bench_json = out_dir / "bench_annotations.json"
    bench_json.write_text(json.dumps({**data, "images": images, "annotations": anns}))
    best = math.inf
    summary = None
    for _ in range(repeats):
        shutil.rmtree(out_dir / "imgs", ignore_errors=True)
        summary = prepare_split("bench", images_dir, bench_json, out_dir, params, progress=False)
        best = min(best, summary.seconds)
    resumed = prepare_split("bench", images_dir, bench_json, out_dir, params, progress=False)
    return {
        "crops": summary.kept,
        "workers": worker_count(params.workers),
        "crops_per_s": summary.kept / best,
        "resumed_crops_per_s": resumed.kept / resumed.seconds,
    }


def benchmark_dataset(
    labels_json: str | Path,
    cfg: Any,
    workers: int = 2,
    batch_size: int = 32,
    batches: int = 20,
    train: bool = True,
    model_step: bool = False,
    device: str = "cpu",
) -> dict[str, float]:
    """Augmented samples per second through a DataLoader (first batch, worker start, excluded).

    With ``model_step``: also forward + backward + loss of ``build_model(cfg.model)`` on one of
    those batches on ``device``, and the share of a step spent waiting for data when loading
    overlaps computing (step time = max(load, compute)): ``1 - loader rate / compute rate``.
    """
    dataset = PoseDataset(labels_json, cfg, train=train)
    # Cycle the (small) sample set so the loader runs for `batches` batches.
    indices = [i % len(dataset) for i in range(batch_size * (batches + 1))]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = make_loader(subset, batch_size, shuffle=False, workers=workers, drop_last=True)
    it = iter(loader)
    first = next(it)
    start = time.perf_counter()
    n = sum(batch["image"].shape[0] for batch in it)
    seconds = time.perf_counter() - start
    result = {"samples": n, "workers": workers, "samples_per_s": n / seconds}
    if model_step:
        model = build_model(cfg.model, pretrained=False).to(device).train()
        loss_fn = PoseLoss(cfg.loss)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = {k: v.to(device) for k, v in first.items()}

        def step() -> None:
            loss, _ = loss_fn(model(batch["image"]), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up (allocations, cuDNN autotune)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        steps = 3
        for _ in range(steps):
            step()
        sync()
        compute = steps * batch_size / (time.perf_counter() - start)
        result["step_samples_per_s"] = compute
        result["data_wait_share"] = max(0.0, 1.0 - result["samples_per_s"] / compute)
    return result


def benchmark_fetch(
    work_dir: str | Path,
    files: int = 80,
    size: int = 100_000,
    latency_s: float = 0.05,
    workers: tuple[int, ...] = (1, 4, 16),
) -> dict[int, float]:
    """Seconds to fetch ``files`` files of ``size`` bytes from a local server (127.0.0.1 only)
    that answers each request after ``latency_s``, per worker count: what parallel connections
    buy against a distant server."""
    work = Path(work_dir)
    served = work / "served"
    served.mkdir(parents=True, exist_ok=True)
    blob = b"\xff\xd8\xff\xe0" + os.urandom(size - 4)  # fetch checks an image's magic bytes
    for i in range(files):
        (served / f"{i}.jpg").write_bytes(blob)

    class SlowHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency_s)
            super().do_GET()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default 5 drops connections of many workers (1 s SYN retry)

    server = Server(("127.0.0.1", 0), functools.partial(SlowHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/{i}.jpg\n" for i in range(files)))
        seconds = {}
        for n in workers:
            t0 = time.perf_counter()
            fetch_urls([urls], work / f"out_{n}", "image", workers=n, progress=False)
            seconds[n] = time.perf_counter() - t0
    finally:
        server.shutdown()
        server.server_close()
    return seconds
