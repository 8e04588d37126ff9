"""What the training loop feeds the model: the prepared split's labels, loaders with the
training settings, and batches on the device in the training memory format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pkmodel.common.devices import DistInfo
from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config
from pkmodel.data.loader import TrainLoader, make_loader


def labels_path(cfg: Config, split: str) -> Path:
    """The prepared labels of ``split`` in ``data.prepared_dir``; missing ones are one sentence."""
    path = cfg.data.prepared_dir / f"{split}.json"
    if not path.is_file():
        raise PkmodelError(
            f"prepared labels {path} do not exist; run `pkmodel prepare-coco --split {split}` "
            "first (data.prepared_dir)"
        )
    return path


def per_process_batch(cfg: Config, dist: DistInfo) -> int:
    """``train.batch_size`` is global: each process loads its share, the same for all (a
    batch that does not split evenly is refused rather than rounded down unsaid)."""
    size, n = cfg.train.batch_size, dist.world_size
    if size < n:
        raise PkmodelError(f"train.batch_size {size} is smaller than the number of processes ({n})")
    if size % n:
        below, above = size - size % n, size - size % n + n
        raise PkmodelError(
            f"train.batch_size {size} does not split evenly over {n} processes (it is the "
            f"global batch): give a multiple of {n}, e.g. {below} or {above}"
        )
    return size // n


def train_loader(dataset: Any, cfg: Config, dist: DistInfo, device: torch.device) -> TrainLoader:
    """The run's loader (``.epoch(e)`` per epoch): order and augmentation are a function of
    (seed, epoch) only; DataLoader workers start once and persist across epochs."""
    return TrainLoader(
        dataset,
        per_process_batch(cfg, dist),
        workers=cfg.train.workers,
        pin_memory=device.type == "cuda",
        distributed=dist.enabled,
        seed=cfg.train.seed,
    )


def epoch_loader(
    dataset: Any, cfg: Config, dist: DistInfo, device: torch.device, epoch: int,
    shuffle: bool = True,
) -> Any:  # fmt: skip
    """A one-epoch loader with the training settings, for any dataset (also a Subset: the
    benchmark's training figure); order and augmentation are a function of (seed, epoch)."""
    return make_loader(
        dataset,
        per_process_batch(cfg, dist),
        shuffle,
        workers=cfg.train.workers,
        pin_memory=device.type == "cuda",
        distributed=dist.enabled,
        seed=cfg.train.seed,
        epoch=epoch,
    )


def set_memory_format(model: nn.Module, cfg: Config) -> nn.Module:
    """The model in the training memory format (``train.channels_last``), in place."""
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def input_images(batch: dict[str, Any], cfg: Config) -> torch.Tensor:
    """The batch's images in the training memory format (a no-op copy when already in it)."""
    images = batch["image"]
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch's tensors on ``device`` (asynchronous copies from pinned memory on CUDA)."""
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
        for k, v in batch.items()
    }
