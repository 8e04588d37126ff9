"""The compiled-model front end: MIL text parsed (literals, constants, BLOBFILE references), the
app's model.mil against its own metadata.json, and malformed programs as one sentence each."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.mlprogram.program import BlobRef, ImageInput, Ref, TensorType
from pkmodel.mlprogram.run import CoreMLProgram, load_program
from pkmodel.mlprogram.text import parse_mil
from tests.mlprogram.conftest import MINI_HEADER, app_model, blobfile, one_sentence, write_mlmodelc


def const(ttype: str, name: str, value: str) -> str:
    return (
        f'            {ttype} {name} = const()[name = tensor<string, []>("{name}"), '
        f"val = {ttype}({value})];\n"
    )


LITERALS = (
    const("tensor<fp32, []>", "scale", "0x1.010102p-7")
    + const("tensor<fp32, [1, 3, 1, 1]>", "bias", "[[[[-0x1p+0]], [[-0x1p+0]], [[-0x1p+0]]]]")
    + const("tensor<fp16, [3]>", "halves", "[0x1.8p+1, -0x1.ffcp+15, 0x1p-24]")
    + const("tensor<fp32, [2]>", "decimals", "[1e-05, -2.5]")
    + const("tensor<fp32, [2]>", "infinite", "[inf, -inf]")
    + const("tensor<int32, [2, 2]>", "nested", "[[1, -2], [3, 4]]")
    + const("tensor<int32, []>", "groups", "1")
    + const("tensor<string, []>", "pad_type", '"custom"')
    + const("tensor<bool, []>", "align", "false")
    + const("tensor<bool, []>", "keep", "true")
    + const("tensor<fp16, [4]>", "w", blobfile("w"))
    + "            tensor<fp32, [is0, 6, 4, ?]> y = concat(axis = groups, interleave = align, "
    'values = (input, input))[name = tensor<string, []>("cat")];\n'
)


def parse(body: str, outputs: str = "y"):
    text = MINI_HEADER + body.format(w=4096) + f"    }} -> ({outputs});\n}}\n"
    return parse_mil(text, Path("model.mil"))


def test_literals_hex_floats_lists_strings_bools_and_blob_references():
    opset, inputs, ops, outputs = parse(LITERALS)
    assert opset == "ios15"
    assert inputs == [("input", TensorType("fp32", (1, 3, 4, 4)))]
    assert outputs == ["y"]
    values = {op.name: op.value for op in ops if op.type == "const"}

    # The app's input scale: 1 / 127.5 as a float32, to the bit.
    assert values["scale"] == np.float32(1 / 127.5)
    assert isinstance(values["scale"], np.float32)
    assert float.fromhex("0x1.010102p-7") == float(np.float32(1 / 127.5))
    assert values["bias"].dtype == np.float32 and values["bias"].shape == (1, 3, 1, 1)
    assert (values["bias"] == -1).all()
    # FP16: 3, the most negative finite value, the smallest subnormal.
    assert values["halves"].dtype == np.float16
    np.testing.assert_array_equal(values["halves"], np.array([3, -65504, 2**-24], np.float16))
    np.testing.assert_array_equal(values["decimals"], np.array([1e-5, -2.5], np.float32))
    np.testing.assert_array_equal(values["infinite"], [np.inf, -np.inf])
    assert values["nested"].dtype == np.int32
    np.testing.assert_array_equal(values["nested"], [[1, -2], [3, 4]])
    assert values["groups"] == 1
    assert values["pad_type"] == "custom"
    assert values["align"] is np.False_ and values["keep"] is np.True_
    assert values["w"] == BlobRef("@model_path/weights/weight.bin", 4096, TensorType("fp16", (4,)))
    (cat,) = [op for op in ops if op.type == "concat"]
    assert cat.name == "cat"
    assert cat.inputs == {
        "axis": Ref("groups"),
        "interleave": Ref("align"),
        "values": (Ref("input"), Ref("input")),
    }
    assert cat.outputs == [("y", TensorType("fp32", (None, 6, 4, None)))]  # open dimensions


def _mini_network_body() -> str:
    """What the app's program does, in small: pixels scaled and biased in FP32, cast to FP16,
    a 1x1 convolution with FP16 weights from the weight file, ReLU, cast back to FP32."""
    return (
        const("tensor<fp32, []>", "scale", "0x1.010102p-7")
        + const("tensor<fp32, [1, 3, 1, 1]>", "bias", "[[[[-0x1p+0]], [[-0x1p+0]], [[-0x1p+0]]]]")
        + const("tensor<string, []>", "to16", '"fp16"')
        + const("tensor<string, []>", "to32", '"fp32"')
        + const("tensor<string, []>", "pad_type", '"valid"')
        + const("tensor<int32, [2]>", "strides", "[1, 1]")
        + const("tensor<int32, [2]>", "dilations", "[1, 1]")
        + const("tensor<int32, []>", "groups", "1")
        + const("tensor<fp16, [2, 3, 1, 1]>", "w", blobfile("w"))
        + const("tensor<fp16, [2]>", "b", blobfile("b"))
        + "            tensor<fp32, [1, 3, 4, 4]> scaled = mul(x = input, y = scale)"
        '[name = tensor<string, []>("scaled")];\n'
        "            tensor<fp32, [1, 3, 4, 4]> biased = add(x = scaled, y = bias)"
        '[name = tensor<string, []>("biased")];\n'
        "            tensor<fp16, [1, 3, 4, 4]> x16 = cast(dtype = to16, x = biased)"
        '[name = tensor<string, []>("cast_1")];\n'
        "            tensor<fp16, [1, 2, 4, 4]> conv16 = conv(bias = b, dilations = dilations, "
        "groups = groups, pad_type = pad_type, strides = strides, weight = w, x = x16)"
        '[name = tensor<string, []>("conv16")];\n'
        "            tensor<fp16, [1, 2, 4, 4]> relu16 = relu(x = conv16)"
        '[name = tensor<string, []>("relu16")];\n'
        "            tensor<fp32, [1, 2, 4, 4]> y = cast(dtype = to32, x = relu16)"
        '[name = tensor<string, []>("cast_0")];\n'
    )


MINI_WEIGHTS = {
    "w": np.array([[0.5, -0.25, 1.0], [-1.5, 0.75, 0.125]], np.float16).reshape(2, 3, 1, 1),
    "b": np.array([0.1, 0.3], np.float16),
}


def test_a_small_compiled_program_runs_to_the_numbers_computed_by_hand(tmp_path):
    folder = write_mlmodelc(tmp_path / "mini.mlmodelc", _mini_network_body(), blobs=MINI_WEIGHTS)
    program = CoreMLProgram(folder)
    assert program.program.image == ImageInput("input", 4, 4, "RGB")
    assert program.program.output_types == {"y": TensorType("fp32", (1, 2, 4, 4))}
    assert program.program.metadata == {"com.github.apple.coremltools.version": "9.0"}
    assert program.program.spec_version == 6
    rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    got = program.run_images(rgb)["y"]

    x = rgb.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 127.5) - np.float32(1)
    x = x.astype(np.float16).astype(np.float64)
    w = MINI_WEIGHTS["w"].astype(np.float64)[:, :, 0, 0]
    y = np.einsum("oc,nchw->nohw", w, x) + MINI_WEIGHTS["b"].astype(np.float64)[None, :, None, None]
    want = np.maximum(y.astype(np.float16), 0).astype(np.float32)
    assert got.shape == (2, 2, 4, 4) and got.dtype == np.float32
    # Sums in float32 (runner) vs float64 (here) may round to neighbouring FP16 values.
    np.testing.assert_array_less(
        np.abs(got - want), np.spacing(np.abs(want).astype(np.float16)) + 1e-7
    )
    assert np.mean(got == want) > 0.95


def _snake(name: str) -> str:
    """metadata.json's operation names (Conv, UpsampleBilinear) -> MIL's (conv, upsample_bilinear)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_app_program_has_the_operations_and_interface_its_metadata_states():
    folder = app_model()
    meta = json.loads((folder / "metadata.json").read_text())[0]
    program = load_program(folder)
    assert program.format == "mlmodelc" and program.opset == "ios15"
    histogram = program.histogram()
    text = (folder / "model.mil").read_text()
    statements = re.findall(r"^\s+tensor<[^=]*> \w+ = (\w+)\(", text, re.MULTILINE)
    assert len(program.ops) == len(statements) == 676  # every statement, in order
    assert [op.type for op in program.ops] == statements
    assert histogram.pop("const") == 533
    stated = {_snake(k): v for k, v in meta["mlProgramOperationTypeHistogram"].items()}
    assert histogram == stated
    assert stated == {"conv": 74, "relu": 44, "add": 14, "cast": 5, "upsample_bilinear": 3,
                      "sigmoid": 2, "mul": 1}  # fmt: skip

    (entry,) = meta["inputSchema"]
    assert program.image == ImageInput(entry["name"], 192, 192, "RGB")
    assert program.inputs == [(entry["name"], TensorType("fp32", (1, 3, 192, 192)))]
    names = [o["name"] for o in meta["outputSchema"]]
    assert program.outputs == names == ["heatmaps", "centers", "regs", "offsets"]
    typed = {name: t for op in program.ops for name, t in op.outputs}
    for schema in meta["outputSchema"]:
        shape = tuple(json.loads(schema["shape"]))
        assert schema["dataType"] == "Float32"
        assert program.output_types[schema["name"]] == TensorType("fp32", shape)
        assert typed[schema["name"]] == TensorType("fp32", shape)
    assert program.spec_version == meta["specificationVersion"] == 6
    assert program.metadata["com.github.apple.coremltools.version"] == "9.0"
    # Every upsampling of the app samples MIL's half-pixel grid (align_corners = false).
    values = {op.outputs[0][0]: op.value for op in program.ops if op.type == "const"}
    for op in program.ops:
        if op.type == "upsample_bilinear":
            assert values[op.inputs["align_corners"].name] is np.False_
            assert values[op.inputs["scale_factor_height"].name] == 2.0


# --- malformed programs: one sentence each, naming the file ------------------------------------


def test_an_unknown_operation_names_the_operation_and_the_program(tmp_path):
    body = (
        "            tensor<fp32, [1, 3, 4, 4]> y = foo(x = input)"
        '[name = tensor<string, []>("the_foo")];\n'
    )
    folder = write_mlmodelc(tmp_path / "foo.mlmodelc", body)
    load_program(folder)  # it parses: the runner is what does not know the operation
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(folder)
    one_sentence(e.value, folder, "'foo'", "the_foo", "is not one pkmodel's Core ML runner knows")


def test_an_unknown_operation_in_the_app_program_names_it(tmp_path):
    original = app_model()
    folder = tmp_path / original.name
    shutil.copytree(original, folder)
    mil = folder / "model.mil"
    text = mil.read_text()
    assert text.count("= sigmoid(") == 2
    mil.write_text(text.replace("= sigmoid(", "= hard_swish(", 1))
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(folder)
    one_sentence(e.value, folder, "'hard_swish'")


R = '[name = tensor<string, []>("r")]'


@pytest.mark.parametrize(
    "bad, after, want",
    [
        (f"tensor<fp32, [1, 3, 4, 4]> r = relu(x input){R};", 0, "expected '=', found 'input'"),
        (f"tensor<fp32, [1, 3, 4, 4]> r = relu(x = input){R}", 1, "expected ';', found 'tensor'"),
        (f"tensor<fp32, [1, 3, 4, 4]> r = relu(x = input) @{R};", 0, "unexpected character '@'"),
        (f"tensor<fp32, [1, 3, 4, 4]> = relu(x = input){R};", 0, "expected a name, found '='"),
        (f"tensor<fp32, [1, 3, 4> r = relu(x = input){R};", 0, "expected a dimension, found '>'"),
    ],
)
def test_a_syntax_error_names_the_file_and_line(tmp_path, bad, after, want):
    """The line of the token where reading stopped (a missing ';' shows on the next line)."""
    lines = _mini_network_body().splitlines(keepends=True)
    body = "".join(lines[:3]) + f"            {bad}\n" + "".join(lines[3:])
    folder = write_mlmodelc(tmp_path / "bad.mlmodelc", body, blobs=MINI_WEIGHTS)
    text = (folder / "model.mil").read_text()
    number = text.splitlines().index(f"            {bad}") + 1 + after
    with pytest.raises(PkmodelError) as e:
        load_program(folder)
    message = one_sentence(e.value, folder / "model.mil", f"line {number}:", want)
    assert "not a MIL program this reads" in message


def test_a_truncated_program_text_names_the_file(tmp_path):
    folder = write_mlmodelc(tmp_path / "cut.mlmodelc", _mini_network_body(), blobs=MINI_WEIGHTS)
    mil = folder / "model.mil"
    mil.write_text(mil.read_text()[:-40])
    with pytest.raises(PkmodelError) as e:
        load_program(folder)
    one_sentence(e.value, mil, "line ")


def test_missing_metadata_or_program_text_is_one_sentence_each(tmp_path):
    folder = write_mlmodelc(tmp_path / "a.mlmodelc", _mini_network_body(), blobs=MINI_WEIGHTS)
    (folder / "metadata.json").unlink()
    with pytest.raises(PkmodelError) as e:
        load_program(folder)
    one_sentence(e.value, folder, "has no metadata.json")

    folder = write_mlmodelc(tmp_path / "b.mlmodelc", _mini_network_body(), blobs=MINI_WEIGHTS)
    (folder / "model.mil").unlink()
    with pytest.raises(PkmodelError) as e:
        load_program(folder)
    one_sentence(e.value, folder, "has no model.mil")

    folder = write_mlmodelc(tmp_path / "c.mlmodelc", _mini_network_body(), blobs=MINI_WEIGHTS)
    (folder / "metadata.json").write_text("{ not json")
    with pytest.raises(PkmodelError) as e:
        load_program(folder)
    one_sentence(e.value, folder / "metadata.json", "is not readable JSON")

    with pytest.raises(PkmodelError) as e:
        load_program(tmp_path / "absent.mlmodelc")
    one_sentence(e.value, tmp_path / "absent.mlmodelc", "does not exist")
