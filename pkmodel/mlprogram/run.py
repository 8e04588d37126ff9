"""Run a Core ML ML Program on any OS: load a bundle, resolve its constants, execute its ops.

``CoreMLProgram(path)`` reads an ``.mlpackage``, ``.mlmodel`` or compiled ``.mlmodelc``;
``run_images(rgb)`` feeds camera pixels as the app does (uint8 RGB, reordered to the model's
colour space; the program's own first ops scale them), ``run(inputs)`` feeds the input tensor.

Precision: every value is held in float32, and a value the program types as fp16 is rounded to
fp16 after the operation that makes it (inputs of an fp16 convolution are fp16 numbers, its sums
are float32, its output is rounded). This emulates, and does not reproduce, Core ML's FP16
arithmetic: the Neural Engine and the GPU accumulate and order sums their own way, so their
outputs differ from this by FP16 rounding noise, not by more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.mlprogram.blobs import BlobFile
from pkmodel.mlprogram.program import BlobRef, Op, Program, Ref, TensorType

PROGRAM_SUFFIXES = (".mlmodelc", ".mlpackage", ".mlmodel")
_FLOATS = ("fp16", "fp32", "fp64", "bf16")


def is_coreml_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in PROGRAM_SUFFIXES


def load_program(path: str | Path) -> Program:
    """The Program of a Core ML bundle or file, by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PROGRAM_SUFFIXES:
        raise PkmodelError(f"{path} is not a Core ML model (expected {', '.join(PROGRAM_SUFFIXES)})")  # fmt: skip
    want = "file" if suffix == ".mlmodel" else "folder"
    if not (path.is_file() if want == "file" else path.is_dir()):
        raise PkmodelError(f"Core ML model {path} {not_there(path, want)}")
    if suffix == ".mlmodelc":
        from pkmodel.mlprogram.text import load_compiled

        return load_compiled(path)
    from pkmodel.mlprogram.proto import load_spec_program

    return load_spec_program(path)


class CoreMLProgram:
    """A loaded program, ready to run on the CPU with PyTorch."""

    def __init__(self, program: Program | str | Path) -> None:
        import torch

        from pkmodel.mlprogram.ops import CONSTEXPR_OPS, OPS

        self.program = program if isinstance(program, Program) else load_program(program)
        p = self.program
        self._blobs: dict[Path, BlobFile] = {}
        self.constants: dict[str, Any] = {}
        self.steps: list[tuple[Op, Any]] = []
        for op in p.ops:
            if op.type == "const":
                name, ttype = op.outputs[0]
                self.constants[name] = self._materialise(op.value, ttype, op)
            elif op.type in CONSTEXPR_OPS:
                args = {k: self._constant_argument(op, k, v) for k, v in op.inputs.items()}
                try:
                    dense = CONSTEXPR_OPS[op.type](**args)
                except (TypeError, ValueError) as e:
                    raise PkmodelError(
                        f"{p.source}: operation {op.type} ({op.name}) cannot be expanded ({e})"
                    ) from None
                name, ttype = op.outputs[0]
                if ttype.dtype == "fp16":  # the dense weight is stored as the program types it
                    dense = np.asarray(dense).astype(np.float16)
                self.constants[name] = self._to_runtime(np.asarray(dense), ttype)
            elif op.type in OPS:
                self.steps.append((op, OPS[op.type]))
            else:
                raise PkmodelError(
                    f"{p.source}: operation {op.type!r} ({op.name}) is not one pkmodel's Core ML "
                    f"runner knows (it knows {', '.join(sorted(OPS) + sorted(CONSTEXPR_OPS))})"
                )
        self._torch = torch
        known = {name for name, _ in p.inputs} | set(self.constants)
        for op, _ in self.steps:
            for key, arg in op.inputs.items():
                for ref in arg if isinstance(arg, tuple) else (arg,):
                    if isinstance(ref, Ref) and ref.name not in known:
                        raise PkmodelError(
                            f"{p.source}: operation {op.type} ({op.name}) reads {key} = "
                            f"{ref.name!r}, which no earlier operation makes"
                        )
            known |= {name for name, _ in op.outputs}
        missing = [name for name in p.outputs if name not in known]
        if missing:
            raise PkmodelError(f"{p.source}: the program's outputs {missing} are never computed")

    # ---- constants

    def _read_blob(self, ref: BlobRef, ttype: TensorType, op: Op) -> np.ndarray:
        path = self.program.weight_file(ref.file)
        if path not in self._blobs:
            self._blobs[path] = BlobFile(path)
        if any(d is None for d in ttype.shape):
            raise PkmodelError(
                f"{self.program.source}: constant {op.name} in {path} has an open shape"
            )
        return self._blobs[path].read(ref.offset, ttype.dtype, tuple(int(d) for d in ttype.shape))  # type: ignore[arg-type]  # fmt: skip

    def _materialise(self, value: Any, ttype: TensorType, op: Op) -> Any:
        if isinstance(value, BlobRef):
            value = self._read_blob(value, ttype, op)
        return self._to_runtime(value, ttype)

    def _to_runtime(self, value: Any, ttype: TensorType) -> Any:
        """Floats of rank >= 1 become float32 tensors (fp16 values kept exact); the rest stays
        NumPy / Python for the ops' parameters."""
        if ttype.dtype in _FLOATS and isinstance(value, np.ndarray) and value.ndim >= 1:
            import torch

            return torch.from_numpy(np.ascontiguousarray(value, np.float32))
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return value.item()
        return value

    def _constant_argument(self, op: Op, key: str, arg: Any) -> Any:
        if isinstance(arg, Ref):
            if arg.name not in self.constants:
                raise PkmodelError(
                    f"{self.program.source}: operation {op.type} ({op.name}) needs {key} = "
                    f"{arg.name!r} to be a constant"
                )
            value = self.constants[arg.name]
            return value.numpy() if hasattr(value, "numpy") else value
        if isinstance(arg, BlobRef):  # attribute-held data of iOS 16 constexpr ops
            if arg.type is None:
                raise PkmodelError(f"{self.program.source}: {op.name}: {key} has no type")
            return self._read_blob(arg, arg.type, op)
        return arg

    # ---- running

    @property
    def input_name(self) -> str:
        return self.program.inputs[0][0]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Input tensors by name (N x C x H x W float) -> output arrays by name (float32).

        The batch may be larger than the program's declared 1: every op runs per sample.
        """
        torch = self._torch
        p = self.program
        env: dict[str, Any] = dict(self.constants)
        for name, ttype in p.inputs:
            if name not in inputs:
                raise PkmodelError(f"{p.source}: input {name!r} is missing")
            x = torch.from_numpy(np.ascontiguousarray(inputs[name], np.float32))
            want = ttype.shape[1:]
            if tuple(x.shape[1:]) != tuple(d if d is not None else x.shape[i + 1] for i, d in enumerate(want)):  # fmt: skip
                raise PkmodelError(
                    f"{p.source}: input {name!r} must be N x {' x '.join(map(str, want))}, "
                    f"got {' x '.join(map(str, x.shape))}"
                )
            env[name] = x.half().float() if ttype.dtype == "fp16" else x

        def resolve(arg: Any) -> Any:
            if isinstance(arg, Ref):
                return env[arg.name]
            if isinstance(arg, tuple):
                return tuple(resolve(a) for a in arg)
            return arg

        with torch.inference_mode():
            for op, fn in self.steps:
                kwargs = {k: resolve(v) for k, v in op.inputs.items()}
                try:
                    out = fn(**kwargs)
                except (TypeError, ValueError, RuntimeError) as e:
                    raise PkmodelError(
                        f"{p.source}: operation {op.type} ({op.name}) failed: "
                        f"{str(e).splitlines()[0][:200]}"
                    ) from None
                outs = out if isinstance(out, tuple | list) else (out,)
                if len(outs) != len(op.outputs):
                    raise PkmodelError(
                        f"{p.source}: operation {op.type} ({op.name}) made {len(outs)} values "
                        f"for its {len(op.outputs)} outputs"
                    )
                for (name, ttype), value in zip(op.outputs, outs, strict=True):
                    if ttype.dtype == "fp16" and value.is_floating_point():
                        value = value.half().float()
                    env[name] = value
        return {name: env[name].float().numpy() for name in p.outputs}

    def run_images(self, rgb: np.ndarray | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Camera pixels as the app gives them: N x H x W x 3 uint8 RGB (or one H x W x 3),
        at the model's input size. Reordered to the model's colour space; the program scales."""
        images = np.asarray(rgb)
        if images.ndim == 3:
            images = images[None]
        image = self.program.image
        if image is None:
            raise PkmodelError(f"{self.program.source} has no image input")
        if images.shape[1:] != (image.height, image.width, 3):
            raise PkmodelError(
                f"{self.program.source} takes {image.width} x {image.height} RGB images, got "
                f"{images.shape[2]} x {images.shape[1]}"
            )
        chw = images.transpose(0, 3, 1, 2).astype(np.float32)
        if image.colorspace == "BGR":
            chw = chw[:, ::-1]
        elif image.colorspace == "GRAYSCALE":
            raise PkmodelError(f"{self.program.source} takes grayscale images; pkmodel feeds RGB")
        return self.run({self.input_name: chw})
