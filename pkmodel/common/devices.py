"""Torch devices and processes: picking a device, torchrun's distributed state, seeds and RNG
state (for exact resumes)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pkmodel.common.errors import PkmodelError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def select_device(
    name: str, local_rank: int = 0, key: str = "train.device", where: str = "--device"
) -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device that is absent is a user error
    (naming ``key``, the config key the device came from, and ``where`` it can be set: its
    option --device, or where a command without that option got the value)."""
    name = name.strip().lower()
    key = f"{key} ({where})"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PkmodelError(f"{key} is '{name}' but CUDA is not available here")
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        try:
            index = int(name.split(":", 1)[1])
        except (IndexError, ValueError):
            raise PkmodelError(f"{key} '{name}' is not cuda or cuda:N") from None
        if index >= torch.cuda.device_count():
            raise PkmodelError(
                f"{key} is '{name}' but only {torch.cuda.device_count()} GPU(s) exist"
            )
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise PkmodelError(f"{key} is 'mps' but Apple MPS is not available here")
        return torch.device("mps")
    raise PkmodelError(f"{key} '{name}' is not one of auto, cpu, cuda, cuda:N, mps")


def init_distributed(dist: DistInfo, device: torch.device) -> bool:
    """Join the process group: NCCL on GPUs, gloo on CPU. True when this call created it."""
    if not dist.enabled or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)
    return True


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries draw from the global RNG)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One seed per (run seed, epoch, rank): an epoch's randomness does not depend on history."""
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**31


def rng_state() -> dict[str, Any]:
    """RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    random.setstate((3, tuple(int(v) for v in state["python"]), state["python_pos"]))
    np.random.set_state(  # noqa: NPY002
        ("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def broadcast_float(value: float, dist: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` in every process (the value itself in a single process)."""
    if not dist.enabled:
        return float(value)
    tensor = torch.tensor([float(value)], device=device)
    torch.distributed.broadcast(tensor, src=0)
    return float(tensor.item())
