"""The runner's numbers: the PoseKit app's compiled model on real COCO photos against an
independent float32 re-implementation, pkmodel's own exports of every precision and compression
kind against PyTorch and against coremltools' own decompression, colour order, batches, the op
semantics coremltools documents, and malformed programs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pkmodel.common.errors import PkmodelError
from pkmodel.mlprogram import ops
from pkmodel.mlprogram.program import BlobRef, TensorType
from pkmodel.mlprogram.run import CoreMLProgram
from pkmodel.model.decode import DecodeSettings, decode_batch
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.conftest import shared_data
from tests.mlprogram.conftest import COMPRESSED, app_model, one_sentence, write_mlmodelc

# --- the app's model on COCO photos ------------------------------------------------------------

# coco_mini photos with one prominent person (the largest annotated person of the picture).
COCO_PHOTOS = ["000000535506.jpg", "000000463557.jpg", "000000030752.jpg", "000000084533.jpg"]
# pkmodel's decoder with the app's numbers (../shared/POSEKIT_APP.md): stride 4, joints below
# heat 0.1 not found, center prior 1 / (distance + 1.8).
APP_DECODE = DecodeSettings(stride=4, score_threshold=0.1, prior_offset=1.8)


@pytest.fixture(scope="module")
def app():
    """The app's program, its loaded runner, the photos letterboxed to 192 (RGB uint8) with
    their letterboxes and largest person's annotation, and the runner's outputs on them."""
    from pkmodel.common.geometry import letterbox_image
    from pkmodel.common.images import read_rgb

    folder = app_model()
    coco = shared_data("coco_mini")
    annotations = json.loads((coco / "annotations/person_keypoints_train2017.json").read_text())
    ids = {im["file_name"]: im["id"] for im in annotations["images"]}
    pictures, boxes, people = [], [], []
    for name in COCO_PHOTOS:
        picture, box = letterbox_image(read_rgb(coco / "train2017" / name), 192)
        pictures.append(picture)
        boxes.append(box)
        mine = [a for a in annotations["annotations"] if a["image_id"] == ids[name]]
        people.append(max(mine, key=lambda a: a["area"]))
    runner = CoreMLProgram(folder)
    pixels = np.stack(pictures)
    return {
        "folder": folder,
        "runner": runner,
        "pixels": pixels,
        "boxes": boxes,
        "people": people,
        "outputs": runner.run_images(pixels),
    }


def test_the_app_model_finds_the_person_in_coco_photos(app):
    """Outputs as metadata.json declares them (batch of 4), sigmoid maps in [0, 1], the center
    on the largest person, and decoded keypoints near the annotated ones (the app's network
    reaches COCO AP about 0.1: near, not exact)."""
    meta = json.loads((app["folder"] / "metadata.json").read_text())[0]
    out = app["outputs"]
    assert list(out) == [o["name"] for o in meta["outputSchema"]]
    for schema in meta["outputSchema"]:
        shape = json.loads(schema["shape"])
        assert out[schema["name"]].shape == (4, *shape[1:])
        assert out[schema["name"]].dtype == np.float32
        assert np.isfinite(out[schema["name"]]).all()
    for name in ("heatmaps", "centers"):
        assert out[name].min() >= 0 and out[name].max() <= 1
    assert out["centers"].max(axis=(1, 2, 3)).min() > 0.6  # a confident center in each photo

    decoded = decode_batch([out[n] for n in OUTPUT_NAMES], APP_DECODE)
    for i, person in enumerate(app["people"]):
        x, y, w, h = person["bbox"]
        center = app["boxes"][i].to_image((decoded.center[i] + 0.5) * APP_DECODE.stride)
        assert x <= center[0] <= x + w and y <= center[1] <= y + h, (COCO_PHOTOS[i], center)
        truth = np.asarray(person["keypoints"], float).reshape(17, 3)
        seen = truth[:, 2] > 0
        found = app["boxes"][i].to_image(decoded.keypoints[i])
        error = np.median(np.linalg.norm(found[seen] - truth[seen, :2], axis=1))
        assert error < 0.15 * np.hypot(w, h), (COCO_PHOTOS[i], error)


def float32_reference(program, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The app's network in float32, written independently of pkmodel's runner: the weights
    through coremltools' C++ blob reader, each operation a plain torch.nn.functional call (MIL's
    upsample_bilinear with align_corners = false samples the half-pixel grid, as
    F.interpolate(align_corners=False) does; casts keep float32). Only the graph (which op
    reads which value) comes from pkmodel's parser, checked against metadata.json elsewhere."""
    from coremltools.libmilstoragepython import _BlobStorageReader

    reader = _BlobStorageReader(str(app_model() / "weights" / "weight.bin"))
    values = {}
    for op in program.ops:
        if op.type == "const":
            value = op.value
            if isinstance(value, BlobRef):
                bits = reader.read_fp16_data(value.offset)
                value = np.frombuffer(bits.tobytes(), np.float16).reshape(value.type.shape)
            values[op.outputs[0][0]] = value
    env = {"input": torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32))}

    def arg(op, key):
        ref = op.inputs[key]
        return env[ref.name] if ref.name in env else values[ref.name]

    def tensor(value):
        return torch.from_numpy(np.asarray(value, np.float32))

    with torch.inference_mode():
        for op in program.ops:
            if op.type == "const":
                continue
            if op.type == "conv":
                pad = [int(p) for p in arg(op, "pad")] if arg(op, "pad_type") == "custom" else [0] * 4  # fmt: skip
                x = F.pad(arg(op, "x"), (pad[2], pad[3], pad[0], pad[1]))
                bias = tensor(arg(op, "bias")) if "bias" in op.inputs else None
                y = F.conv2d(x, tensor(arg(op, "weight")), bias,
                             stride=[int(s) for s in arg(op, "strides")],
                             dilation=[int(d) for d in arg(op, "dilations")],
                             groups=int(arg(op, "groups")))  # fmt: skip
            elif op.type == "relu":
                y = torch.relu(arg(op, "x"))
            elif op.type == "sigmoid":
                y = torch.sigmoid(arg(op, "x"))
            elif op.type in ("add", "mul"):
                x, other = arg(op, "x"), arg(op, "y")
                other = other if isinstance(other, torch.Tensor) else tensor(other)
                y = x + other if op.type == "add" else x * other
            elif op.type == "cast":
                y = arg(op, "x")
            elif op.type == "upsample_bilinear":
                scale = (float(arg(op, "scale_factor_height")), float(arg(op, "scale_factor_width")))  # fmt: skip
                y = F.interpolate(arg(op, "x"), scale_factor=scale, mode="bilinear",
                                  align_corners=bool(arg(op, "align_corners")))  # fmt: skip
            else:
                raise AssertionError(f"the app's program has no {op.type}")
            env[op.outputs[0][0]] = y
    return {name: env[name].numpy() for name in program.outputs}


def without_fp16(program):
    """The same program with every computed value typed float32 (constants stay FP16 values):
    the runner then rounds nothing."""

    def widen(t: TensorType) -> TensorType:
        return TensorType("fp32", t.shape) if t.dtype == "fp16" else t

    copied = []
    for op in program.ops:
        if op.type != "const":
            op = dataclasses.replace(op, outputs=[(n, widen(t)) for n, t in op.outputs])
        copied.append(op)
    return dataclasses.replace(program, ops=copied)


# The app's FP16 program as the runner emulates it, against the float32 reference on the four
# photos: measured max abs differences heatmaps 8.8e-4, centers 5.3e-4, regs 0.021 (values up to
# 23 cells, where one FP16 step is 0.016), offsets 1.8e-3; every joint on the same cell.
APP_FP16_TOLERANCE = {"heatmaps": 4e-3, "centers": 4e-3, "regs": 0.1, "offsets": 8e-3}


def test_the_app_model_in_fp16_matches_an_independent_float32_run(app):
    program = app["runner"].program
    reference = float32_reference(program, app["pixels"])
    got = app["outputs"]
    for name, limit in APP_FP16_TOLERANCE.items():
        diff = float(np.abs(got[name] - reference[name]).max())
        assert 0 < diff <= limit, (name, diff)  # FP16 rounding shows, and stays small
    ours = decode_batch([got[n] for n in OUTPUT_NAMES], APP_DECODE)
    theirs = decode_batch([reference[n] for n in OUTPUT_NAMES], APP_DECODE)
    np.testing.assert_array_equal(ours.center, theirs.center)
    same = np.all(ours.cells == theirs.cells, axis=-1)
    assert same.mean() >= 0.99, same.mean()  # 68 joints: in fact every one

    # With its rounding off, the runner computes what the reference computes: any difference is
    # float32 summation order, so the op semantics (padding, grid, casts) are the same.
    widened = CoreMLProgram(without_fp16(program)).run_images(app["pixels"][:1])
    for name in OUTPUT_NAMES:
        scale = max(1.0, float(np.abs(reference[name][:1]).max()))
        assert np.abs(widened[name] - reference[name][:1]).max() <= 2e-5 * scale, name


def test_the_app_first_convolution_equals_a_by_hand_fp16_convolution(app):
    """The first layer (input scaling in float32, cast to FP16, 3x3 stride-2 convolution with
    padding 1 and FP16 weights, output rounded to FP16) computed with NumPy in float64 from
    coremltools' reading of the weights: the same FP16 numbers, up to one FP16 step where the
    float32 and float64 sums round to neighbouring FP16 values."""
    from coremltools.libmilstoragepython import _BlobStorageReader

    program = app["runner"].program
    k = next(i for i, op in enumerate(program.ops) if op.type == "conv")
    conv = program.ops[k]
    name = conv.outputs[0][0]
    assert conv.outputs[0][1] == TensorType("fp16", (1, 32, 96, 96))
    first = dataclasses.replace(program, ops=program.ops[: k + 1], outputs=[name])
    got = CoreMLProgram(first).run_images(app["pixels"][:2])[name]

    consts = {op.outputs[0][0]: op.value for op in program.ops[:k] if op.type == "const"}
    assert [int(v) for v in consts[conv.inputs["pad"].name]] == [1, 1, 1, 1]
    assert [int(v) for v in consts[conv.inputs["strides"].name]] == [2, 2]
    reader = _BlobStorageReader(str(app_model() / "weights" / "weight.bin"))

    def fp16_blob(ref):
        bits = reader.read_fp16_data(consts[ref.name].offset)
        return np.frombuffer(bits.tobytes(), np.float16).astype(np.float64)

    weight = fp16_blob(conv.inputs["weight"]).reshape(32, 3, 3, 3)
    bias = fp16_blob(conv.inputs["bias"])
    x = app["pixels"][:2].transpose(0, 3, 1, 2).astype(np.float32)
    x = (x * np.float32(1 / 127.5) - np.float32(1)).astype(np.float16).astype(np.float64)
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    want = np.einsum("nchwij,ocij->nohw", windows, weight) + bias[None, :, None, None]
    want = want.astype(np.float16)
    assert got.shape == want.shape == (2, 32, 96, 96)
    # One FP16 step, plus float32's own summation error near zero (sums of terms near 1).
    step = np.spacing(np.abs(want)).astype(np.float32) + 1e-6
    assert (np.abs(got - want.astype(np.float32)) <= step).all()
    assert np.mean(got == want.astype(np.float32)) > 0.99


# --- pkmodel's own exports against PyTorch and coremltools -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", COMPRESSED)
def test_compressed_weights_equal_coremltools_decompression_exactly(programs, kind):
    """Every constexpr op's dense weight (iOS 16 affine dequantise / packed LUT, iOS 18
    blockwise shift-scale / typed LUT) equals coremltools' own ``materialized_val_inference``
    of the program coremltools loads from the same spec and weight file, to the bit."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as mil_load

    mlmodel = ct.models.MLModel(str(programs[kind]), skip_model_load=True)
    spec = mlmodel.get_spec()
    reference = mil_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    runner = CoreMLProgram(programs[kind])
    constexprs = [op for op in reference.functions["main"].operations if op.op_type.startswith("constexpr_")]  # fmt: skip
    assert (
        len(constexprs)
        == 31  # the network's weights big enough to compress
        == sum(n for t, n in runner.program.histogram().items() if t.startswith("constexpr_"))
    )
    for op in constexprs:
        want = np.asarray(op.materialized_val_inference())
        got = runner.constants[op.outputs[0].name].numpy()
        assert want.dtype == np.float16 and got.shape == want.shape
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=op.name)


# Program vs PyTorch FP32 on the 16 rendered pictures (realistic_network): the largest max abs
# difference allowed for the sigmoid maps (heatmaps, centers) and the vector maps (regs, offsets,
# in cells), and the least share of the 272 joints decoded to the same cell. Measured (max abs
# heatmaps, centers, regs, offsets; same cell):
#   fp32            4.9e-6  5.8e-6  4.8e-6  3.2e-6   100%
#   fp16            7.7e-3  7.0e-3  5.7e-3  5.5e-3   98.2% (the others are near-ties)
#   int8, int8_18   3.1e-2  2.7e-2  2.1e-2  2.0e-2   97.8%
#   pal6, pal6_18   0.13    0.13    0.21    0.19     85.3%
#   pal4, pal4_18   0.43    0.36    0.83    0.82     63.2%
# (The shared heads' one output conv is one palette: its heatmap and center rows, HEAD_GAIN
# larger, set the palette's range, so regs and offsets get coarser steps than the maps.)
# Compressed weights change the network itself (their price is AP, --check-ap); their limits
# are the measured differences with a margin, to catch a runner that decompresses wrongly.
TOLERANCE = {
    "fp32": (1e-4, 1e-4, 1.0),
    "fp16": (0.015, 0.01, 0.9),
    "int8": (0.06, 0.04, 0.9),
    "int8_18": (0.06, 0.04, 0.9),
    "pal6": (0.25, 0.3, 0.75),
    "pal6_18": (0.25, 0.3, 0.75),
    "pal4": (0.8, 1.2, 0.5),
    "pal4_18": (0.8, 1.2, 0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(TOLERANCE))
def test_programs_match_pytorch_within_their_tolerance(runner_outputs, torch_outputs, kind):
    """FP32 within 1e-4 everywhere; FP16 within its rounding noise. The small network's maps
    are random-smooth (no training): some of its decisions are near-ties that FP16 noise flips
    (measured: one picture's center, whose lead is 2e-4 of its value, and 3 joints whose best
    cells tie), so its share of same cells is lower than a trained network's: the app's model
    keeps every joint (test_the_app_model_in_fp16_matches_an_independent_float32_run)."""
    maps, vectors, least_same = TOLERANCE[kind]
    got = runner_outputs[kind]
    for name, g, r in zip(OUTPUT_NAMES, got, torch_outputs, strict=True):
        limit = maps if name in ("heatmaps", "centers") else vectors
        diff = float(np.abs(g - r).max())
        assert diff <= limit, (kind, name, diff)
    settings = DecodeSettings()
    ours, theirs = decode_batch(got, settings), decode_batch(torch_outputs, settings)
    same = np.all(ours.cells == theirs.cells, axis=-1)
    assert same.mean() >= least_same, (kind, same.mean())


@pytest.mark.slow
def test_the_network_under_test_has_realistic_outputs(torch_outputs):
    """What makes the comparisons above mean something: peaked sigmoid maps and vector maps that
    vary from cell to cell (a freshly initialised network's are nearly constant)."""
    heatmaps, centers, regs, offsets = torch_outputs
    peaks = heatmaps.max(axis=(2, 3))
    assert 0.4 < np.median(peaks) < 0.95 and np.median(heatmaps) < 0.2
    assert centers.max(axis=(2, 3)).min() > 0.3
    assert regs.std() > 0.1 and offsets.std() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("ios16, ios18", [("int8", "int8_18"), ("pal6", "pal6_18"), ("pal4", "pal4_18")])  # fmt: skip
def test_ios16_and_ios18_forms_of_one_compression_run_alike(runner_outputs, ios16, ios18):
    """coremltools stores the same quantisation as iOS 16 ops (affine dequantise, packed LUT)
    or iOS 18 ops (blockwise shift-scale, typed LUT): two different decompression paths of the
    runner, one result."""
    for name, a, b in zip(OUTPUT_NAMES, runner_outputs[ios16], runner_outputs[ios18], strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.slow
def test_a_bgr_model_fed_rgb_pixels_gives_the_rgb_models_outputs(programs, runner_outputs, frames):
    """export.color_layout = BGR: the program reverses the channels (MIL ``reverse``) after the
    app's pixels come in BGR; run_images reorders RGB pixels as Core ML would."""
    bgr = CoreMLProgram(programs["bgr"])
    assert bgr.program.image.colorspace == "BGR"
    assert bgr.program.histogram().get("reverse") == 1
    for name, a, b in zip(OUTPUT_NAMES, runner_outputs["bgr"], runner_outputs["fp16"], strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # Fed without the reordering, the same program gives other outputs: the order matters.
    raw = frames[:2].transpose(0, 3, 1, 2).astype(np.float32)
    wrong = bgr.run({bgr.input_name: raw})
    assert np.abs(wrong["heatmaps"] - runner_outputs["fp16"][0][:2]).max() > 0.05


@pytest.mark.slow
def test_a_batch_gives_what_each_picture_gives_alone(programs, frames, runner_outputs):
    """Every op runs per sample. In FP32 the outputs agree up to the float32 summation order of
    PyTorch's batched convolutions; FP16 rounding can turn that into FP16 steps (measured
    2.4e-3 after the whole FP16 network), within its tolerance against PyTorch."""
    runner = CoreMLProgram(programs["fp32"])
    batch = runner.run_images(frames[:3])
    for i in range(3):
        alone = runner.run_images(frames[i])
        for name in OUTPUT_NAMES:
            assert alone[name].shape[0] == 1 and batch[name].shape[0] == 3
            np.testing.assert_allclose(batch[name][i : i + 1], alone[name], rtol=0, atol=1e-5)
    alone = CoreMLProgram(programs["fp16"]).run_images(frames[5])
    for name, together in zip(OUTPUT_NAMES, runner_outputs["fp16"], strict=True):
        np.testing.assert_allclose(together[5:6], alone[name], rtol=0, atol=0.01)


# --- op semantics as coremltools documents them ------------------------------------------------


@pytest.mark.parametrize(
    "align_corners, size, grid",
    [
        (False, 5, [0.0, 0.1, 0.5, 0.9, 1.0]),
        (True, 5, [0.0, 0.25, 0.5, 0.75, 1.0]),
        (False, 6, [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]),
        (True, 6, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    ],
)
def test_upsample_bilinear_samples_the_grid_coremltools_documents(align_corners, size, grid):
    """The grid points of coremltools' upsample_bilinear docstring for Xin = 2: an input
    [0, 1] along x interpolates to the sample positions themselves."""
    x = torch.tensor([[[[0.0, 1.0]]]])
    y = ops.upsample_bilinear(x, 1, size / 2, align_corners=align_corners)
    assert y.shape == (1, 1, 1, size)
    np.testing.assert_allclose(y[0, 0, 0].numpy(), grid, atol=1e-6)


def test_upsample_bilinear_without_corners_is_pytorchs_half_pixel_bilinear():
    x = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    got = ops.upsample_bilinear(x, 2.0, 2.0, align_corners=False)
    want = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_cast_to_integers_truncates_toward_zero_as_core_ml_does():
    """coremltools' backend test of cast (run on Core ML itself): the values and the answer."""
    x = np.array([[-1.2, 2, -3.6], [4.5, -5, 6.7]], np.float32)
    got = ops.cast(x, "int32")
    np.testing.assert_array_equal(got.numpy(), [[-1, 2, -3], [4, -5, 6]])


# --- malformed programs -------------------------------------------------------------------------


def _relu(name: str, x: str) -> str:
    return (
        f"            tensor<fp32, [1, 3, 4, 4]> {name} = relu(x = {x})"
        f'[name = tensor<string, []>("{name}_op")];\n'
    )


def test_an_operation_reading_an_undefined_value_is_one_sentence(tmp_path):
    folder = write_mlmodelc(tmp_path / "undefined.mlmodelc", _relu("y", "nowhere"))
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(folder)
    one_sentence(e.value, folder, "relu (y_op)", "'nowhere'", "which no earlier operation makes")


def test_an_operation_reading_a_later_value_is_refused_too(tmp_path):
    body = _relu("y", "later") + _relu("later", "input")
    folder = write_mlmodelc(tmp_path / "order.mlmodelc", body)
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(folder)
    one_sentence(e.value, folder, "'later'", "which no earlier operation makes")


def test_an_output_never_computed_is_one_sentence(tmp_path):
    folder = write_mlmodelc(tmp_path / "missing.mlmodelc", _relu("y", "input"), outputs="y, z")
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(folder)
    one_sentence(e.value, folder, "['z']", "never computed")


def test_pictures_of_the_wrong_size_are_one_sentence(tmp_path):
    folder = write_mlmodelc(tmp_path / "ok.mlmodelc", _relu("y", "input"))
    runner = CoreMLProgram(folder)
    assert runner.run_images(np.zeros((4, 4, 3), np.uint8))["y"].shape == (1, 3, 4, 4)
    with pytest.raises(PkmodelError) as e:
        runner.run_images(np.zeros((1, 5, 4, 3), np.uint8))
    one_sentence(e.value, folder, "takes 4 x 4 RGB images, got 4 x 5")


def test_split_gives_the_parts_coremltools_defines(tmp_path):
    """A program with coremltools' own split (by sizes, and into equal parts), converted and
    saved by coremltools: the runner gives each output its slice of the input."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 6, 2, 4))], opset_version=ct.target.iOS15)
    def program(x):
        a, b, c = mb.split(x=x, split_sizes=[1, 2, 3], axis=1)
        d, e = mb.split(x=x, num_splits=2, axis=-1)
        return a, b, c, d, e

    model = ct.convert(
        program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS15,
    )  # fmt: skip
    model.save(str(tmp_path / "split.mlpackage"))
    runner = CoreMLProgram(tmp_path / "split.mlpackage")
    assert runner.program.histogram()["split"] == 2
    x = np.arange(48, dtype=np.float32).reshape(1, 6, 2, 4)
    got = runner.run({runner.input_name: x})
    want = [x[:, :1], x[:, 1:3], x[:, 3:], x[..., :2], x[..., 2:]]
    assert len(got) == len(want) == len(runner.program.outputs)
    for name, part in zip(runner.program.outputs, want, strict=True):
        np.testing.assert_array_equal(got[name], part)
    with pytest.raises(ValueError, match="equal parts"):
        ops.split(torch.zeros(1, 5), axis=1, num_splits=2)


def test_an_empty_model_spec_is_one_sentence(tmp_path):
    """A model spec of 0 bytes (a file cut short or written over) parses as a Model with no
    type set: the error said "a Core ML None model"; it names the empty spec."""
    from coremltools.proto import Model_pb2

    from pkmodel.mlprogram.proto import program_from_spec

    spec = Model_pb2.Model()
    spec.ParseFromString(b"")  # what the empty model.mlmodel reads as
    source = tmp_path / "m.mlpackage"
    with pytest.raises(PkmodelError) as e:
        program_from_spec(spec, source, tmp_path, "mlpackage")
    message = one_sentence(e.value, source, "holds no Core ML model (its model spec is empty")
    assert "None" not in message
