"""Every command that runs a network takes a checkpoint, an ONNX file or a Core ML model alike
(pkmodel.engine.networks), and `model-info --weights` describes each of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.engine.networks import load_network, network_device, weights_kind
from pkmodel.export import common, coreml
from pkmodel.export.describe import describe_weights, format_description
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.conftest import shared_data
from tests.export.conftest import SIZE, small_config

runner = CliRunner()
APP_MODEL = ("posekit_app", "pkmodel.mlmodelc")


def test_weights_kind_by_suffix():
    kinds = [weights_kind(p) for p in ("a.pt", "b.pth", "c.ONNX", "d.mlpackage", "e.mlmodelc", "f.mlmodel")]  # fmt: skip
    assert kinds == ["checkpoint", "checkpoint", "onnx", "coreml", "coreml", "coreml"]
    assert network_device("m.onnx", "cuda:7").type == "cpu"  # exports never ask for a GPU
    assert network_device("m.mlpackage", "auto").type == "cpu"


def test_the_three_kinds_give_the_same_outputs(checkpoint, exports):
    """One batch through the checkpoint, its ONNX export and its FP16 Core ML export (run by
    pkmodel's runner from normalised inputs, as evaluate feeds it)."""
    x = torch.from_numpy(common.normalise_pixels(common.sample_input(SIZE, batch=3, seed=2)))
    nets = {kind: load_network(exports[kind] if kind != "pt" else checkpoint) for kind in ("pt", "onnx", "fp16")}  # fmt: skip
    assert [n.kind for n in nets.values()] == ["checkpoint", "onnx", "coreml"]
    assert {n.input_size for n in nets.values()} == {SIZE}
    with torch.inference_mode():
        out = {k: [o.numpy() for o in n.module(x)] for k, n in nets.items()}
    for name, ref, onnx_out, ml_out in zip(OUTPUT_NAMES, out["pt"], out["onnx"], out["fp16"], strict=True):  # fmt: skip
        assert ref.shape == onnx_out.shape == ml_out.shape and ref.shape[0] == 3
        assert np.abs(onnx_out - ref).max() < 1e-4, name
        limit = coreml.COREML_TOLERANCE["fp16"]
        assert np.abs(ml_out - ref).max() < (limit.maps if name in ("heatmaps", "centers") else limit.vectors), name  # fmt: skip
    cfg = small_config()
    cfg.model.input_size = 256
    nets["fp16"].configure(cfg)
    assert cfg.model.input_size == SIZE
    nets["pt"].configure(cfg)
    assert cfg.model.width_mult == 0.35


def test_an_onnx_file_whose_weights_hold_nan_is_refused_when_it_runs(exports, tmp_path):
    """A NaN weight in an export (the checkpoint check cannot see it) made every keypoint NaN,
    and the JSON writers failed with a traceback: now one sentence naming the file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exports["onnx"]))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    net = load_network(path)
    x = torch.from_numpy(common.normalise_pixels(common.sample_input(SIZE, batch=1, seed=2)))
    with pytest.raises(PkmodelError) as e:
        net.module(x)
    assert str(e.value).startswith(f"{path} gave NaN or Inf in its '")
    assert str(e.value).endswith("output: its weights hold NaN or Inf, or the file is damaged")


def test_a_core_ml_model_without_the_four_outputs_is_refused(tmp_path):
    model = tmp_path / "other.mlmodelc"
    model.mkdir()
    (model / "model.mil").write_text(
        "program(1.0)\n{\n  func main<ios15>(tensor<fp32, [1, 3, 8, 8]> input) {\n"
        '    tensor<fp32, [1, 3, 8, 8]> out = relu(x = input)[name = tensor<string, []>("r")];\n'
        "  } -> (out);\n}\n"
    )
    (model / "metadata.json").write_text(json.dumps([{
        "inputSchema": [{"type": "Image", "name": "input", "width": "8", "height": "8", "colorspace": "RGB"}],
        "outputSchema": [{"name": "out", "dataType": "Float32", "shape": "[1, 3, 8, 8]"}],
    }]))  # fmt: skip
    with pytest.raises(PkmodelError, match=r"does not have the outputs \['heatmaps'"):
        load_network(model)


@pytest.mark.slow
def test_evaluate_scores_the_app_model_and_an_onnx_file(tmp_path, exports):
    ann = shared_data("mmpose_coco", "test_coco.json")
    app_model = shared_data(*APP_MODEL)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--weights", str(app_model), "--annotations", str(ann),
                                 "--images", str(ann.parent), "--out", str(out), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # The app's network on the 12 people of mmpose's COCO val sample (docs/export.md).
    assert metrics["AP"] == pytest.approx(0.138, abs=0.01)
    assert metrics["PCK"] == pytest.approx(0.597, abs=0.02)
    assert metrics["input_size"] == 192 and metrics["weights"] == str(app_model)
    # ONNX used to be refused by evaluate; now it is scored like the checkpoint it came from.
    onnx_out = tmp_path / "eval_onnx"
    result = runner.invoke(app, ["evaluate", "--weights", str(exports["onnx"]), "--annotations",
                                 str(ann), "--images", str(ann.parent), "--out", str(onnx_out),
                                 "--quiet", "--pictures", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((onnx_out / "metrics.json").read_text())["input_size"] == SIZE


@pytest.mark.slow
def test_predict_with_the_app_model_finds_the_skier(tmp_path):
    """mmpose's 000000000785.jpg: one skier, box x 281..500, y 45..392 (COCO's annotation)."""
    image = shared_data("mmpose_coco", "000000000785.jpg")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(image), "--weights", str(shared_data(*APP_MODEL)),
                                 "--out", str(out), "--quiet", "--set", "decoder.score_threshold=0.1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    item = json.loads((out / "keypoints.json").read_text())["items"][0]
    xy = np.array(item["keypoints"])[np.array(item["found"])]
    assert len(xy) >= 12  # most joints found at the app's own threshold
    inside = (xy[:, 0] > 260) & (xy[:, 0] < 520) & (xy[:, 1] > 30) & (xy[:, 1] < 410)
    assert inside.mean() >= 0.9
    cx, cy = item["center"]
    assert 281 <= cx <= 500 and 45 <= cy <= 392
    assert (out / "000000000785_pose.jpg").stat().st_size > 10_000


def test_model_info_describes_the_app_model():
    info = describe_weights(shared_data(*APP_MODEL))
    assert (
        info["kind"] == "coreml" and info["input"] == "image 'input' 192 x 192 RGB, pixels 0..255"
    )
    meta = json.loads(shared_data(*APP_MODEL, "metadata.json").read_text())[0]
    want = {k.lower(): v for k, v in meta["mlProgramOperationTypeHistogram"].items()}
    got = {k.replace("_", ""): v for k, v in info["ops"].items() if k != "const"}
    assert got == want  # Conv 74, Relu 44, Add 14, Cast 5, UpsampleBilinear 3, Sigmoid 2, Mul 1
    assert info["outputs"] == {"heatmaps": "fp32 1 x 17 x 48 x 48", "centers": "fp32 1 x 1 x 48 x 48",
                               "regs": "fp32 1 x 34 x 48 x 48", "offsets": "fp32 1 x 34 x 48 x 48"}  # fmt: skip
    assert list(info["tensor_dtypes"]) == ["fp16"]  # "storagePrecision": "Float16"
    # The weight file is the program's fp16 blobs (plus 64-byte headers and alignment).
    weight_file = shared_data(*APP_MODEL, "weights", "weight.bin").stat().st_size
    assert 0.99 * weight_file < info["tensor_dtypes"]["fp16"] < weight_file


def test_model_info_cli_for_each_kind(checkpoint, exports):
    lines = {}
    for kind, path in (("pt", checkpoint), ("onnx", exports["onnx"]), ("fp16", exports["fp16"])):
        result = runner.invoke(app, ["model-info", "--weights", str(path)])
        assert result.exit_code == 0, result.output
        lines[kind] = result.output
    assert "pkmodel checkpoint (PyTorch)" in lines["pt"] and "parameters: 280,918" in lines["pt"]
    assert "ONNX opset 18" in lines["onnx"] and "Conv " in lines["onnx"]
    assert f"input: image 'input' {SIZE} x {SIZE} RGB, pixels 0..255" in lines["fp16"]
    assert "export check on 32 generated synthetic picture(s)" in lines["fp16"]
    described = describe_weights(exports["fp16"])
    # 58 convolutions: the fused-s8 stem has 6 where MobileNetV2's first five blocks have 12,
    # the shared heads 3 where four separate heads have 12
    assert (
        described["ops"]["conv"] == 58
        and described["ops"]["split"] == 1
        and described["metadata"]["precision"] == "fp16"
    )
    assert format_description(described)[0].startswith(f"{exports['fp16']}: Core ML ML Program (mlpackage, spec version 8")  # fmt: skip
    # precision counts the values computed, not the constants: each op's outputs, split's four
    computed = sum(int(part.split()[1]) for part in described["precision"].removesuffix(" operations").split(", "))  # fmt: skip
    ops = described["ops"]
    assert computed == sum(ops.values()) - ops["const"] + 3 and described["precision"].startswith("fp16 ")  # fmt: skip


def test_model_info_json_says_a_checkpoint_runs_its_ema_weights(checkpoint):
    """A checkpoint with EMA weights runs them (model_from_checkpoint): --json says 'EMA'."""
    result = runner.invoke(app, ["model-info", "--weights", str(checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["weights"] == "EMA"


def _graph_model(inputs: list, outputs: list[str]):
    """A one-node ONNX model (Identity from the first input, or a constant) with these
    outputs."""
    from onnx import TensorProto, helper

    def value(name: str, shape: list[int]):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    source = inputs[0][0] if inputs else "k"
    nodes = [helper.make_node("Identity", [source], [name]) for name in outputs]
    if not inputs:
        nodes.insert(0, helper.make_node("Constant", [], ["k"], value_floats=[1.0]))
    graph = helper.make_graph(
        nodes, "g", [value(n, s) for n, s in inputs], [value(n, [1, 3, 8, 8]) for n in outputs]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_model_info_refuses_onnx_files_that_predict_refuses(tmp_path):
    """An empty file and foreign bytes parse as an ONNX model without a graph: model-info
    described them ("ONNX opset 0, 0.0 kB ... input: ") with exit 0, predict refused them."""
    import onnx

    (tmp_path / "zero.onnx").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    onnx.save(_graph_model([], ["heatmaps"]), str(tmp_path / "noinput.onnx"))
    onnx.save(_graph_model([("x", [1, 3, 8, 8])], ["y"]), str(tmp_path / "other.onnx"))
    want = {
        "zero.onnx": "is not a readable ONNX model (the file is empty)",
        "junk.onnx": "is not a readable ONNX model (it holds no graph)",
        "noinput.onnx": "is not a pkmodel ONNX export (expected one N x 3 x S x S input)",
        "other.onnx": "is not a pkmodel ONNX export (outputs ['y'], expected ['heatmaps', "
        "'centers', 'regs', 'offsets'])",
    }
    for name, words in want.items():
        path = tmp_path / name
        result = runner.invoke(app, ["model-info", "--weights", str(path)])
        assert (result.exit_code, result.output) == (2, f"error: {path} {words}\n"), name
        with pytest.raises(PkmodelError):
            load_network(path)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_model_info_refuses_a_core_ml_model_whose_weights_are_missing(exports, tmp_path, damage):
    """model-info read only the program: without weight.bin, or with half of it, it described
    the model (its stored weights in bytes included) with exit 0, where predict refused it."""
    import shutil

    bundle = tmp_path / "m.mlpackage"
    shutil.copytree(exports["fp16"], bundle)
    blob = bundle / "Data/com.apple.CoreML/weights/weight.bin"
    assert blob.stat().st_size == 558_316
    if damage == "deleted":
        blob.unlink()
        words = "does not exist"
    else:
        blob.write_bytes(blob.read_bytes()[:279_158])  # half
        words = "at offset 253440: the data ends at byte 291136 but the file is 279158 bytes (truncated)"  # fmt: skip
    result = runner.invoke(app, ["model-info", "--weights", str(bundle)])
    assert (result.exit_code, result.output) == (2, f"error: weight file {blob} {words}\n")
    with pytest.raises(PkmodelError) as e:
        load_network(bundle)
    assert str(e.value) == f"weight file {blob} {words}"  # the sentence predict gives


def test_model_info_counts_an_onnx_files_scalar_weights_and_not_its_listed_initializers(tmp_path):
    """A scalar initializer (no dims) is one value, not none; an initializer also listed among
    the graph's inputs (as ONNX before IR version 4 required) is a weight, not a second input."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [])
    outputs = ["heatmaps", "centers", "regs", "offsets"]
    nodes = [helper.make_node("Mul", ["x", "k"], ["heatmaps"])]
    nodes += [helper.make_node("Identity", ["x"], [name]) for name in outputs[1:]]
    weights = [helper.make_tensor("k", TensorProto.FLOAT, [], [2.0]),
               helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [0.5] * 6)]  # fmt: skip
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in outputs]
    graph = helper.make_graph(nodes, "g", [x, k], values, initializer=weights)
    path = tmp_path / "m.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    info = describe_weights(path)
    assert info["input"] == "x 1 x 3 x 8 x 8 float32, x / 127.5 - 1"
    assert info["tensor_dtypes"] == {"float": 7} and info["precision"] == "float weights, run by ONNX Runtime"  # fmt: skip
    assert info["ops"] == {"Identity": 3, "Mul": 1}


def test_model_info_lines_of_a_description():
    """What model-info prints: stored weights in bytes for Core ML (values for the others), the
    operations' total, the export check's same-cell share in percent (not repeated as
    metadata), metadata longer than 100 characters cut to 97 and '...'."""
    check = {"images": "32 pictures", "heatmaps": 0.000185, "regs": 2.4e-05, "same_cells": 0.984}
    info = {"path": "m.mlpackage", "kind": "coreml", "format": "Core ML ML Program (opset ios16)",
            "size_bytes": 558_316, "input": "image 'input' 128 x 128 RGB, pixels 0..255",
            "outputs": {"heatmaps": "fp32 1 x 17 x 32 x 32"}, "precision": "fp16 122 operations",
            "tensor_dtypes": {"fp16": 549_564}, "ops": {"const": 421, "conv": 58, "split": 1},
            "metadata": {"pkmodel_check": json.dumps(check), "z": "x" * 101, "a": "y" * 100}}  # fmt: skip
    assert format_description(info) == [
        "m.mlpackage: Core ML ML Program (opset ios16), 0.56 MB on disk",
        "input: image 'input' 128 x 128 RGB, pixels 0..255",
        "output heatmaps: fp32 1 x 17 x 32 x 32",
        "precision: fp16 122 operations",
        "stored weights (bytes): fp16 549,564",
        "operations (480): const 421, conv 58, split 1",
        "export check on 32 pictures: heatmaps 1.85e-04, regs 2.40e-05; same cell 98.4%",
        "metadata a: " + "y" * 100,
        "metadata z: " + "x" * 97 + "...",
    ]
    onnx_info = {**info, "kind": "onnx", "tensor_dtypes": {"float": 7}, "metadata": {}}
    assert "stored weights (values): float 7" in format_description(onnx_info)
