"""Devices and RNG state."""

from __future__ import annotations

import pytest
import torch

from pkmodel.common.devices import rng_state, select_device, set_rng_state
from pkmodel.common.errors import PkmodelError
from pkmodel.model.checkpoint import load_checkpoint, save_checkpoint


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(PkmodelError, match=r"train.device \(--device\) 'tpu' is not one of"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PkmodelError, match="CUDA is not available"):
            select_device("cuda:0")


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}, "rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # noqa: NPY002
