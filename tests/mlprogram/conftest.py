"""Shared by the Core ML runner tests: a small network with realistic activations, its Core ML
programs of every precision / compression kind (made once per test session), the images they
run on, and tiny hand-written compiled (``.mlmodelc``) programs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.conftest import shared_data
from tests.export.conftest import SIZE, small_config

APP_MODEL = ("posekit_app", "pkmodel.mlmodelc")

# Every program made from the small network: name -> (precision, minimum iOS, compression,
# palette bits, colour layout). The iOS 17 kinds hold iOS 16 constexpr ops
# (constexpr_affine_dequantize, packed constexpr_lut_to_dense); the iOS 18 kinds hold the iOS 18
# ones (constexpr_blockwise_shift_scale, constexpr_lut_to_dense with uint4 / uint6 indices).
KINDS = {
    "fp32": ("fp32", 17, "none", 0, "RGB"),
    "fp16": ("fp16", 17, "none", 0, "RGB"),
    "int8": ("fp16", 17, "int8", 8, "RGB"),
    "pal6": ("fp16", 17, "palette", 6, "RGB"),
    "pal4": ("fp16", 17, "palette", 4, "RGB"),
    "int8_18": ("fp16", 18, "int8", 8, "RGB"),
    "pal6_18": ("fp16", 18, "palette", 6, "RGB"),
    "pal4_18": ("fp16", 18, "palette", 4, "RGB"),
    "bgr": ("fp16", 17, "none", 0, "BGR"),
}
COMPRESSED = [k for k, v in KINDS.items() if v[2] != "none"]

# The network's BatchNorm variances are floored at this after calibration, and the heatmap and
# center heads' last convolutions scaled by HEAD_GAIN (see realistic_network).
VARIANCE_FLOOR = 0.1
HEAD_GAIN = 8.0


def app_model() -> Path:
    """The PoseKit app's compiled model, or skip (a user checkout has no ../shared)."""
    return shared_data(*APP_MODEL)


def synthetic_frames(seeds, size: int = SIZE) -> np.ndarray:
    """Rendered pictures of a person in a room (N x size x size x 3 uint8 RGB), as
    ``pkmodel make-synthetic`` draws them: real structure (limbs, edges, textures) at no cost."""
    from pkmodel.data.synthetic.scene import SceneParams, sample_frame

    params = SceneParams(width=size, height=size, second_person_prob=0.0, max_depth_m=6.0)
    return np.stack([sample_frame(np.random.default_rng(s), params).rgb for s in seeds])


def realistic_network(seed: int = 0) -> torch.nn.Module:
    """The small test network (input 128, width 0.35) with activations like a trained one's.

    A freshly initialised PoseNet in eval mode has BatchNorm running statistics of 0 / 1 that do
    not match its activations: they shrink layer by layer, and every output is a near-constant
    map (heatmaps 0.1 +- 1e-5), so FP16 rounding cannot show and the decoded cell is an
    arbitrary tie. Training it even a few steps is too slow here. Instead the BatchNorm statistics
    are calibrated on rendered pictures (one train-mode pass, the running averages then equal the
    batch statistics, as a trained network's do), every variance is floored at VARIANCE_FLOOR (a
    near-dead channel would otherwise be amplified up to 300x, an ill-conditioned network no
    training produces), and the heatmap / center heads' last weights are scaled by HEAD_GAIN so
    their logits spread like a trained network's (std about 1.1; peaks about 0.6, background
    near 0). Every layer then carries unit-scale, spatially varying activations.
    """
    from pkmodel.export.common import normalise_pixels
    from pkmodel.model.network import build_model

    torch.manual_seed(seed)
    model = build_model(small_config().model, pretrained=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.momentum = None  # a cumulative average: one pass sets the batch statistics
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(normalise_pixels(synthetic_frames(range(100, 108)))))
        for bn in norms:
            bn.running_var.clamp_(min=VARIANCE_FLOOR)
        model.head.out.weight[: NUM_JOINTS + 1].mul_(HEAD_GAIN)  # heatmaps and centers
    return model.eval()


@pytest.fixture(scope="package")
def frames() -> np.ndarray:
    """16 rendered pictures at the small network's input size (not those it was calibrated on)."""
    return synthetic_frames(range(16))


@pytest.fixture(scope="package")
def checkpoint(tmp_path_factory) -> Path:
    """realistic_network saved as a pkmodel checkpoint (the same weights as model and EMA)."""
    from pkmodel.model.checkpoint import save_checkpoint

    state = realistic_network().state_dict()
    path = tmp_path_factory.mktemp("mlprogram_ckpt") / "small.pt"
    save_checkpoint(path, {"model": state, "ema": state, "config": small_config().to_dict()})
    return path


def _quiet() -> None:
    """coremltools' converters print progress bars and warnings; the tests only need results."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)


@pytest.fixture(scope="package")
def programs(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """Every KINDS program of the checkpoint as a saved .mlpackage, made once.

    The FP16 program is written by ``export_coreml`` itself (the command's whole path). The others
    reuse its steps (``trace_network``, ``convert_coreml``, ``compress_coreml``, as
    ``export_coreml`` calls them) to share one trace and one conversion per target: the compressed
    iOS 17 programs compress the saved FP16 export, the iOS 18 ones one iOS 18 conversion
    (``export_coreml`` with minimum_ios = 18 and compression is not relied on here).
    """
    from pkmodel.export import coreml
    from pkmodel.export.common import load_export_model

    ct = coreml.import_coremltools()
    _quiet()
    out = tmp_path_factory.mktemp("mlprogram_exports")
    paths = {name: out / f"{name}.mlpackage" for name in KINDS}
    # export_coreml checks its program against PyTorch itself: on 4 pictures here (the tests
    # below do it on 16), to save time.
    coreml.export_coreml(checkpoint, paths["fp16"], small_config(check_count=4))
    model, _, _ = load_export_model(checkpoint)
    traced = coreml.trace_network(model, SIZE)
    coreml.convert_coreml(traced, SIZE, "fp32", "RGB", 17).save(str(paths["fp32"]))
    fp16 = ct.models.MLModel(str(paths["fp16"]), skip_model_load=True)
    ios18 = coreml.convert_coreml(traced, SIZE, "fp16", "RGB", 18)
    for name in COMPRESSED:
        _, ios, method, bits, _ = KINDS[name]
        base = ios18 if ios == 18 else fp16
        coreml.compress_coreml(base, method, bits, "uniform").save(str(paths[name]))
    bgr = coreml.trace_network(model, SIZE, bgr=True)
    coreml.convert_coreml(bgr, SIZE, "fp16", "BGR", 17).save(str(paths["bgr"]))
    return paths


@pytest.fixture(scope="package")
def torch_outputs(checkpoint, frames) -> list[np.ndarray]:
    """The PyTorch network's outputs on ``frames`` (FP32, the reference)."""
    from pkmodel.export.common import load_export_model, normalise_pixels

    model, _, _ = load_export_model(checkpoint)
    with torch.inference_mode():
        return [o.numpy() for o in model(torch.from_numpy(normalise_pixels(frames)))]


@pytest.fixture(scope="package")
def runner_outputs(programs, frames) -> dict[str, list[np.ndarray]]:
    """Each program run by pkmodel's runner on ``frames`` (outputs in OUTPUT_NAMES order)."""
    from pkmodel.mlprogram.run import CoreMLProgram

    results = {}
    for name, path in programs.items():
        out = CoreMLProgram(path).run_images(frames)
        results[name] = [out[k] for k in OUTPUT_NAMES]
    return results


# --- tiny hand-written compiled programs -------------------------------------------------------

MINI_HEADER = """program(1.0)
[buildInfo = dict<tensor<string, []>, tensor<string, []>>({{"coremltools-version", "9.0"}})]
{
    func main<ios15>(tensor<fp32, [1, 3, 4, 4]> input) {
"""


def write_mlmodelc(
    folder: Path, body: str, outputs: str = "y", blobs: dict[str, np.ndarray] | None = None
) -> Path:
    """A compiled-model folder: ``model.mil`` with ``body`` as the main function's operations,
    ``metadata.json`` declaring a 4 x 4 RGB image input and one float32 output ``y`` of
    1 x 2 x 4 x 4, and, when ``blobs`` is given, ``weights/weight.bin`` written by coremltools'
    own blob writer. The offsets of the blobs (by key) are substituted for ``{key}`` in ``body``.
    """
    from coremltools.libmilstoragepython import _BlobStorageWriter

    folder.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    if blobs:
        (folder / "weights").mkdir(exist_ok=True)
        writer = _BlobStorageWriter(str(folder / "weights" / "weight.bin"))
        for key, array in blobs.items():
            write = writer.write_fp16_data if array.dtype == np.float16 else writer.write_float_data
            data = array.view(np.uint16) if array.dtype == np.float16 else array
            offsets[key] = int(write(np.ascontiguousarray(data.reshape(-1))))
        del writer  # flushes the file
    text = MINI_HEADER + body.format(**offsets) + f"    }} -> ({outputs});\n}}\n"
    (folder / "model.mil").write_text(text)
    meta = [{
        "specificationVersion": 6,
        "inputSchema": [{"name": "input", "type": "Image", "width": "4", "height": "4",
                         "colorspace": "RGB"}],
        "outputSchema": [{"name": "y", "type": "MultiArray", "dataType": "Float32",
                          "shape": "[1, 2, 4, 4]"}],
        "userDefinedMetadata": {"com.github.apple.coremltools.version": "9.0"},
    }]  # fmt: skip
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def blobfile(offset_key: str) -> str:
    return (
        'BLOBFILE(path = tensor<string, []>("@model_path/weights/weight.bin"), '
        f"offset = tensor<uint64, []>({{{offset_key}}}))"
    )


def one_sentence(error: BaseException, *names: object) -> str:
    """The error's message, checked to be one line that names each of ``names``."""
    message = str(error)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message
