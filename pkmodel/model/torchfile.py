"""Reading a PyTorch file safely: the checkpoints and the backbone weights (model.pretrained)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

from pkmodel.common.errors import PkmodelError


def load_torch_file(path: Path, refused: str, map_location: Any = "cpu", hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)``. A file that is not one (its first bytes are
    neither torch's ZIP nor a pickle), one whose ZIP entries fail their checksums, or one that
    holds more than tensors and plain containers is one PkmodelError: ``refused`` (what the
    file is not, naming it) and why in brackets, ``hint`` first where it is not a PyTorch file
    (e.g. "an ONNX model, ")."""
    import torch

    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip or a pickle
        raise PkmodelError(f"{refused} ({hint}not a PyTorch file)")
    if head.startswith(b"PK\x03\x04"):
        _check_crcs(path, refused)
    try:
        with warnings.catch_warnings():  # a plain pickle: the error below says it better
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise PkmodelError(
            f"{refused} (it holds Python objects that a safe weights-only load refuses)"
        ) from None
    except Exception as e:  # torch raises many types for files that are not PyTorch files
        raise PkmodelError(f"{refused} (not a readable PyTorch file: {type(e).__name__})") from None


def _check_crcs(path: Path, refused: str) -> None:
    """torch.load does not check the CRC each entry of its ZIP carries: a flipped bit on disk
    loaded as a silently wrong weight. Every entry is checked (a read of the whole file)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise PkmodelError(f"{refused} (not a readable PyTorch file: {e})") from None
    if bad is not None:
        raise PkmodelError(
            f"{path} is damaged: its entry {bad} does not match its checksum (a copy cut short "
            "or changed on disk)"
        )
