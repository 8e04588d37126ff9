"""A battery of bad inputs through the real command line (one subprocess each, run side by
side): every one ends with exit code 2 and one line on stderr naming the file, key or value at
fault, prints no traceback, and leaves every file that was there before byte-identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TINY = """[model]
input_size = 64
width_mult = 0.35
neck_channels = 24
head_channels = 24
[train]
batch_size = 4
workers = 0
device = "cpu"
[eval]
batch_size = 8
"""


@dataclass(frozen=True)
class Case:
    """``args`` of `pkmodel` run in a folder of its own (``{here}``); ``files`` are written there
    first; stderr must be one line containing ``says`` (placeholders filled in)."""

    name: str
    args: tuple[str, ...]
    says: str
    files: dict[str, bytes | str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


COCO_NO_PEOPLE = '{"images": [], "annotations": [], "categories": []}'
LABELS_OTHER = '{"schema": "something.else", "samples": []}'


def _coco(**annotation: object) -> str:
    """A COCO keypoint file of one image and one person, the person's fields replaced."""
    person = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [10, 10, 2] * 17,
              "bbox": [0, 0, 20, 20], **annotation}  # fmt: skip
    return json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
                       "annotations": [person], "categories": [{"id": 1, "name": "person"}]})  # fmt: skip


# A compiled Core ML model's files (an .mlmodelc folder): MIL text, its interface, weights.
MIL = """program(1.0)
[buildInfo = dict<tensor<string, []>, tensor<string, []>>({{{{"coremlc-version", "3500.32.1"}}}})]
{{
    func main<ios15>(tensor<fp32, [1, 3, 8, 8]> input) {{
{ops}    }} -> (heatmaps);
}}
"""
MIL_CONST = (
    '            tensor<fp16, [2, 3, 1, 1]> w = const()[name = tensor<string, []>("w"), val = '
    'tensor<fp16, [2, 3, 1, 1]>(BLOBFILE(path = tensor<string, []>("@model_path/weights/weight.bin"), '
    "offset = tensor<uint64, []>(64)))];\n"
)
MIL_GELU = (
    "            tensor<fp32, [1, 3, 8, 8]> heatmaps = gelu(x = input)"
    '[name = tensor<string, []>("g")];\n'
)
MIL_META = json.dumps([{"inputSchema": [{"type": "Image", "name": "input", "width": "8", "height": "8", "colorspace": "RGB"}]}])  # fmt: skip
# Header (1 blob, version 2), one record (sentinel, fp16, 12 bytes at 128), 8 of the 12 bytes.
TRUNCATED = (
    (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(56)
    + (0xDEADBEEF).to_bytes(4, "little") + (1).to_bytes(4, "little")
    + (12).to_bytes(8, "little") + (128).to_bytes(8, "little") + bytes(40) + bytes(8)
)  # fmt: skip


def _png(array) -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.asarray(array))[1].tobytes()


def _stray(**files: bytes | str) -> dict[str, bytes | str]:
    """A Stray Scanner folder rec/ of two frames (its video a stub unless replaced)."""
    import numpy as np

    rows = "".join(f"{10 + i * 0.5}, {i:06d}, 0, 0, 0, 0, 0, 0, 1\n" for i in range(2))
    base: dict[str, bytes | str] = {
        "rec/rgb.mp4": b"\x00\x00\x00\x18ftypmp42 a stub, not a video",
        "rec/camera_matrix.csv": "50.0, 0.0, 31.5\n0.0, 50.0, 23.5\n0.0, 0.0, 1.0",
        "rec/odometry.csv": "timestamp, frame, x, y, z, qx, qy, qz, qw\n" + rows,
        **{f"rec/{d}/{i:06d}.png": _png(np.full((12, 16), v, np.uint16 if d == "depth" else np.uint8))
           for i in range(2) for d, v in (("depth", 1500), ("confidence", 2))},
    }  # fmt: skip
    base.update(files)
    return {k: v for k, v in base.items() if v != ""}


def _lzfse(data: bytes) -> bytes:
    import lzfse

    return lzfse.compress(data)


def _r3d(metadata: dict | None = None, depth: bytes | None = None) -> bytes:
    """A Record3D .r3d (a ZIP) of one 64 x 48 frame with 16 x 12 depth."""
    import io
    import zipfile

    import cv2
    import numpy as np

    meta = {"K": [50.0, 0, 0, 0, 50.0, 0, 31.5, 23.5, 1], "w": 64, "h": 48, "dw": 16, "dh": 12,
            "fps": 30} if metadata is None else metadata  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        if meta != {"omit": True}:
            zf.writestr("metadata", json.dumps(meta))
        zf.writestr(
            "rgbd/0.jpg", cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
        )
        blob = _lzfse(np.ones((12, 16), np.float32).tobytes()) if depth is None else depth
        zf.writestr("rgbd/0.depth", blob)
    return buffer.getvalue()


def _crop_cut_short() -> Case:
    """show-samples on prepared labels s.json of one sample whose crop imgs/s/c.jpg lost its
    second half (OpenCV decoded it with grey rows and only a libjpeg warning, exit code 0); the
    labels record the whole file's size and SHA-1."""
    import hashlib

    import cv2
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    crop = cv2.imencode(".jpg", pixels)[1].tobytes()
    cut = len(crop) // 2
    sample = {"image": "imgs/s/c.jpg", "keypoints": [[16.5, 16.5, 2.0]] * 17, "center": [16.5, 16.5],
              "crop_box": [0, 0, 32], "crop_bytes": len(crop), "crop_sha1": hashlib.sha1(crop).hexdigest()}  # fmt: skip
    labels = {"schema": "pkmodel.prepared", "version": 1, "crop_size": 32, "samples": [sample]}
    return Case("show-samples-crop-cut-short", ("show-samples", "--dataset", "{here}", "--split", "s",
                                                "--out", "{here}/g.png"),
                f"crop {{here}}/imgs/s/c.jpg listed in {{here}}/s.json is {cut} bytes, "
                f"not the {len(crop)} the labels record: cut short or changed since prepare-coco "
                "wrote it (run `pkmodel prepare-coco` again)",
                files={"s.json": json.dumps(labels), "imgs/s/c.jpg": crop[:cut]})  # fmt: skip


def _plain(confidence: bytes | None = None) -> dict[str, bytes | str]:
    """A plain RGB-D folder rec/ of one 8 x 8 frame with a confidence image (default: three
    channels, which a confidence map must not have)."""
    import numpy as np

    if confidence is None:
        confidence = _png(np.full((8, 8, 3), 2, np.uint8))
    return {
        "rec/a_color.png": _png(np.zeros((8, 8, 3), np.uint8)),
        "rec/a_depth.png": _png(np.full((8, 8), 1000, np.uint16)),
        "rec/a_confidence.png": confidence,
        "rec/intrinsics.json": '{"fx": 10, "fy": 10, "cx": 3.5, "cy": 3.5, "depth_scale_per_meter": 1000}',
    }


# lift on a plain folder rec/ (_plain) with the network, a Stray Scanner folder rec/ (_stray)
# and a Record3D file a.r3d (_r3d)
LIFT_PLAIN = ("lift", "--input", "{here}/rec", "-w", "{ckpt}", "--out", "{here}/l", "--quiet")
LIFT_STRAY = ("lift", "--input", "{here}/rec", "--ground-truth-2d", "--out", "{here}/l")
LIFT_R3D = ("lift", "--input", "{here}/a.r3d", "--ground-truth-2d", "--out", "{here}/l")

CASES = [
    # The configuration, whatever the command.
    Case("config-missing", ("config", "show", "--config", "{here}/no.toml"),
         "config file {here}/no.toml (from --config) does not exist"),
    Case("config-folder", ("config", "show", "--config", "{here}"), "is a folder, not a file"),
    Case("config-not-toml", ("config", "show", "--config", "{here}/c.toml"),
         "config file {here}/c.toml is not valid TOML", files={"c.toml": "[train\nepochs = 3\n"}),
    Case("config-unknown-key", ("config", "show", "--config", "{here}/c.toml"),
         "unknown config key 'train.epoch' (did you mean 'train.epochs'?)",
         files={"c.toml": "[train]\nepoch = 3\n"}),
    Case("set-no-equals", ("config", "show", "--set", "train.epochs"),
         "--set 'train.epochs' must look like section.key=value"),
    Case("set-unknown-section", ("config", "show", "--set", "trian.epochs=3"),
         "unknown config section 'trian' (did you mean 'train'?)"),
    Case("set-wrong-type", ("config", "show", "--set", "train.epochs=many"),
         "train.epochs must be an integer, got 'many'"),
    Case("env-wrong-type", ("config", "show"), "env PKMODEL_TRAIN__LR: train.lr must be a number",
         env={"PKMODEL_TRAIN__LR": "fast"}),
    Case("config-check-inf", ("config", "check", "--set", "targets.sigma_scale=inf"),
         "targets.sigma_scale = inf must be a finite number"),
    Case("config-init-exists", ("config", "init", "{here}/c.toml"), "already exists",
         files={"c.toml": "[train]\n"}),
    # make-synthetic
    Case("synthetic-size-small", ("make-synthetic", "--out", "{here}/s", "--size", "10x10"),
         "--size '10x10': width and height must be 32-4096 pixels"),
    Case("synthetic-size-text", ("make-synthetic", "--out", "{here}/s", "--size", "big"),
         "--size 'big' must look like WIDTHxHEIGHT"),
    Case("synthetic-out-is-file", ("make-synthetic", "--out", "{here}/f", "--num-train", "1"),
         "output folder {here}/f exists and is not a folder", files={"f": "x"}),
    Case("synthetic-nothing", ("make-synthetic", "--out", "{here}/s", "--num-train", "0",
                               "--num-val", "0", "--sequences", "0"), "nothing to generate"),
    # prepare-coco
    Case("prepare-missing-annotations", ("prepare-coco", "--split", "x", "--images", "{here}",
                                         "--annotations", "{here}/no.json", "--out", "{here}/p"),
         "{here}/no.json does not exist"),
    Case("prepare-not-json", ("prepare-coco", "--split", "x", "--images", "{here}",
                              "--annotations", "{here}/a.json", "--out", "{here}/p"),
         "annotation file {here}/a.json is not valid JSON", files={"a.json": "{oops"}),
    Case("prepare-no-default-split", ("prepare-coco", "--split", "extra", "--out", "{here}/p"),
         "split 'extra' has no default data: pass --images and --annotations"),
    Case("prepare-crop-size", ("prepare-coco", "--split", "x", "--images", "{here}",
                               "--annotations", "{here}/a.json", "--set", "prepare.crop_size=4"),
         "prepare.crop_size = 4 must be >= 8", files={"a.json": COCO_NO_PEOPLE}),
    # an id that is no integer or past 64 bits (a TypeError, an OverflowError), a text joint
    Case("prepare-image-id-list", ("prepare-coco", "--split", "x", "--images", "{here}",
                                   "--annotations", "{here}/a.json", "--out", "{here}/p"),
         "{here}/a.json: annotations[0] (id 1) 'image_id' must be an integer, got [1]",
         files={"a.json": _coco(image_id=[1])}),
    Case("evaluate-annotation-id-huge", ("evaluate", "--config", "{tiny}", "--oracle",
                                         "--annotations", "{here}/a.json", "--images", "{here}",
                                         "--out", "{here}/e", "--quiet"),
         "{here}/a.json: annotations[0] 'id' must be an integer from -2**63 to 2**63 - 1 (64 bits), "
         "got 1180591620717411303424", files={"a.json": _coco(id=2**70)}),
    Case("data-pseudo-category-id-list", ("data", "pseudo-label", "{here}/imgs", "--weights",
                                          "{ckpt}", "--annotations", "{here}/a.json", "--out",
                                          "{here}/p", "--quiet"),
         "{here}/a.json: annotations[0] (id 1) 'category_id' must be an integer, got [1]",
         files={"a.json": _coco(category_id=[1]), "imgs/a.png": "not decoded: a.json comes first"}),
    Case("prepare-visibility-text", ("prepare-coco", "--split", "x", "--images", "{here}",
                                     "--annotations", "{here}/a.json", "--out", "{here}/p"),
         "{here}/a.json: annotations[0] (id 1) 'keypoints' entry 2 is '2', not a number",
         files={"a.json": _coco(keypoints=[10, 10, "2"] + [10, 10, 2] * 16)}),
    # train
    Case("train-input-size", ("train", "--config", "{tiny}", "--out", "{here}/r", "--set",
                              "data.prepared_dir={prepared}", "--set", "model.input_size=100"),
         "model.input_size = 100 must be a positive multiple of 32"),
    Case("train-no-data", ("train", "--config", "{tiny}", "--out", "{here}/r", "--set",
                           "data.prepared_dir={here}/none"), "prepared labels {here}/none/train.json do not exist"),
    Case("train-resume-nothing", ("train", "--config", "{tiny}", "--out", "{here}/r", "--resume",
                                  "--set", "data.prepared_dir={prepared}"),
         "--resume: {here}/r/last.pt does not exist"),
    Case("train-max-steps", ("train", "--config", "{tiny}", "--out", "{here}/r", "--max-steps",
                             "0", "--set", "data.prepared_dir={prepared}"),
         "--max-steps 0 must be at least 1"),
    Case("train-finetune-text", ("train", "--config", "{tiny}", "--out", "{here}/r", "--finetune",
                                 "{here}/w.pt", "--set", "data.prepared_dir={prepared}"),
         "{here}/w.pt is not a pkmodel checkpoint", files={"w.pt": "not weights\n"}),
    Case("train-device", ("train", "--config", "{tiny}", "--out", "{here}/r", "--device",
                          "cuda:7", "--set", "data.prepared_dir={prepared}"),
         "train.device (--device) is 'cuda:7' but CUDA is not available here"),
    Case("train-earlier-run", ("train", "--config", "{tiny}", "--out", "{here}/r", "--set",
                               "data.prepared_dir={prepared}"),
         "{here}/r already holds last.pt of an earlier run", files={"r/last.pt": b"weights"}),
    Case("train-lr-nan", ("train", "--config", "{tiny}", "--out", "{here}/r", "--lr", "nan",
                          "--set", "data.prepared_dir={prepared}"),
         "train.lr = nan must be a finite number"),
    _crop_cut_short(),
    # evaluate
    Case("evaluate-missing-weights", ("evaluate", "--config", "{tiny}", "--weights",
                                      "{here}/no.pt", "--out", "{here}/e"),
         "weights file {here}/no.pt does not exist"),
    Case("evaluate-onnx-weights", ("evaluate", "--config", "{tiny}", "--weights", "{here}/m.onnx",
                                   "--out", "{here}/e"),
         "{here}/m.onnx is not a readable ONNX model",
         files={"m.onnx": b"\x08\x07\x12\x07pytorch"}),
    # Core ML programs run by pkmodel's runner: an unknown operation, a missing weight file, a
    # weight file cut short.
    Case("evaluate-coreml-unknown-op", ("evaluate", "--config", "{tiny}", "--weights",
                                        "{here}/m.mlmodelc", "--out", "{here}/e"),
         "{here}/m.mlmodelc: operation 'gelu' (g) is not one pkmodel's Core ML runner knows",
         files={"m.mlmodelc/model.mil": MIL.format(ops=MIL_GELU), "m.mlmodelc/metadata.json": MIL_META}),
    Case("predict-coreml-missing-blob", ("predict", "{here}/m.mlmodelc", "--weights",
                                         "{here}/m.mlmodelc", "--out", "{here}/p"),
         "weight file {here}/m.mlmodelc/weights/weight.bin does not exist",
         files={"m.mlmodelc/model.mil": MIL.format(ops=MIL_CONST + MIL_GELU),
                "m.mlmodelc/metadata.json": MIL_META}),
    Case("evaluate-coreml-truncated-weights", ("evaluate", "--config", "{tiny}", "--weights",
                                               "{here}/m.mlmodelc", "--out", "{here}/e"),
         "weight file {here}/m.mlmodelc/weights/weight.bin at offset 64: the data ends at byte 140 "
         "but the file is 136 bytes (truncated)",
         files={"m.mlmodelc/model.mil": MIL.format(ops=MIL_CONST + MIL_GELU),
                "m.mlmodelc/metadata.json": MIL_META, "m.mlmodelc/weights/weight.bin": TRUNCATED}),
    Case("evaluate-batch-size", ("evaluate", "--config", "{tiny}", "--oracle", "--batch-size",
                                 "0", "--out", "{here}/e", "--set", "data.prepared_dir={prepared}"),
         "eval.batch_size = 0 must be at least 1"),
    Case("evaluate-labels-missing", ("evaluate", "--config", "{tiny}", "--oracle", "--labels",
                                     "{here}/no.json", "--out", "{here}/e"),
         "prepared labels {here}/no.json do not exist (run `pkmodel prepare-coco`)"),
    Case("evaluate-labels-other", ("evaluate", "--config", "{tiny}", "--oracle", "--labels",
                                   "{here}/l.json", "--out", "{here}/e"),
         "{here}/l.json is not a pkmodel prepared-labels file", files={"l.json": LABELS_OTHER}),
    # predict
    Case("predict-missing-input", ("predict", "{here}/no.jpg", "--weights", "{ckpt}",
                                   "--out", "{here}/o"), "input {here}/no.jpg does not exist"),
    Case("predict-not-an-image", ("predict", "{here}/notes.txt", "--weights", "{ckpt}",
                                  "--out", "{here}/o"), "{here}/notes.txt is neither an image",
         files={"notes.txt": "hello"}),
    Case("predict-corrupt-image", ("predict", "{here}/bad.jpg", "--weights", "{ckpt}",
                                   "--out", "{here}/o", "--quiet"),
         "image {here}/bad.jpg cannot be loaded (cannot decode (Truncated File Read))",
         files={"bad.jpg": b"\xff\xd8\xff\xe0 truncated"}),
    # a name with a byte that is not UTF-8 (Latin-1 'e acute'): OpenCV crashed the process
    Case("predict-video-name-not-utf8", ("predict", "{here}/v\udce9.mp4", "--weights", "{ckpt}",
                                         "--out", "{here}/o", "--quiet"),
         "cannot open {here}/v\\xe9.mp4: its name is not UTF-8 text, which OpenCV cannot open",
         files={"v\udce9.mp4": b"not a video"}),
    Case("lift-folder-name-not-utf8", ("lift", "--input", "{here}/rec\udce9", "-w", "{ckpt}",
                                       "--out", "{here}/l", "--quiet"),
         "its name is not UTF-8 text, which OpenCV cannot open (rename the file or folder)",
         files={f"rec\udce9/{k[4:]}": v for k, v in _plain().items()}),
    # export
    Case("export-coreml-suffix", ("export-coreml", "--weights", "{ckpt}", "--out",
                                  "{here}/m.mlmodel"), "--out {here}/m.mlmodel must end with .mlpackage"),
    Case("export-onnx-opset", ("export-onnx", "--weights", "{ckpt}", "--out", "{here}/m.onnx",
                               "--opset", "11"), "export.onnx_opset = 11 is not supported"),
    Case("export-onnx-exists", ("export-onnx", "--weights", "{ckpt}", "--out", "{here}/m.onnx"),
         "{here}/m.onnx already exists; pass --force to overwrite it", files={"m.onnx": b"old"}),
    Case("export-ios", ("export-coreml", "--weights", "{ckpt}", "--out", "{here}/m.mlpackage",
                        "--set", "export.minimum_ios=14"), "export.minimum_ios = 14 is not supported"),
    # an input named like an output: ONNX's checker spoke of "SSA form"
    Case("export-onnx-input-name", ("export-onnx", "--weights", "{ckpt}", "--out", "{here}/m.onnx",
                                    "--set", "export.input_name=heatmaps"),
         "export.input_name 'heatmaps' is the name of an output (heatmaps, centers, regs, offsets); choose another"),  # fmt: skip
    Case("export-coreml-input-name", ("export-coreml", "--weights", "{ckpt}", "--out",
                                      "{here}/m.mlpackage", "--set", "export.input_name=regs"),
         "export.input_name 'regs' is the name of an output"),
    # lift
    Case("lift-sequence-without-files", ("lift", "--input", "{here}/rec", "--ground-truth-2d",
                                         "--out", "{here}/l"),
         "input folder {here}/rec holds no RGB-D recording: no annotations.json, intrinsics.json, Stray Scanner recording or .r3d file in it or in the folders of {here}/rec/sequences",  # fmt: skip
         files={"rec/sequences/seq_000/rgb/000000.jpg": b"\xff\xd8"}),
    Case("lift-missing-input", ("lift", "--input", "{here}/none", "--ground-truth-2d",
                                "--out", "{here}/l"), "input folder {here}/none does not exist"),
    Case("lift-device", ("lift", "--input", "{synthetic}", "--weights", "{ckpt}", "--device",
                         "tpu", "--out", "{here}/l"), "lift.device (--device) 'tpu' is not one of"),
    Case("lift-window", ("lift", "--input", "{synthetic}", "--ground-truth-2d", "--out",
                         "{here}/l", "--set", "lift.window=4"), "lift.window = 4 must be a positive odd number"),
    Case("lift-confidence-channels", LIFT_PLAIN, "{here}/rec/a_confidence.png must be one channel, it has shape (8, 8, 3)",
         files=_plain()),
    Case("lift-confidence-unreadable", LIFT_PLAIN, "confidence image {here}/rec/a_confidence.png cannot be read",
         files=_plain(b"not a png")),
    # lift: the capture apps' recordings
    Case("lift-stray-no-matrix", LIFT_STRAY, "{here}/rec has no camera_matrix.csv",
         files=_stray(**{"rec/camera_matrix.csv": ""})),
    Case("lift-stray-matrix-shape", LIFT_STRAY, "{here}/rec/camera_matrix.csv must hold a 3 x 3 camera matrix",
         files=_stray(**{"rec/camera_matrix.csv": "50, 0, 31.5\n0, 50, 23.5\n"})),
    Case("lift-stray-matrix-text", LIFT_STRAY, "{here}/rec/camera_matrix.csv must hold a 3 x 3 camera matrix",
         files=_stray(**{"rec/camera_matrix.csv": "fx, 0, cx\n0, fy, cy\n0, 0, 1"})),
    Case("lift-stray-odometry-short", LIFT_STRAY, "depth map 000001.png has no row of frame 000001 in odometry.csv",
         files=_stray(**{"rec/odometry.csv": "timestamp, frame, x, y, z, qx, qy, qz, qw\n1.0, 000000, 0, 0, 0, 0, 0, 0, 1\n"})),
    Case("lift-stray-odometry-time", LIFT_STRAY, "odometry.csv: frame timestamps must be finite and strictly increasing",
         files=_stray(**{"rec/odometry.csv": "timestamp, frame, x, y, z, qx, qy, qz, qw\n"
                         "2.0, 000000, 0, 0, 0, 0, 0, 0, 1\n1.5, 000001, 0, 0, 0, 0, 0, 0, 1\n"})),
    Case("lift-stray-confidence-count", LIFT_STRAY, "{here}/rec: 1 confidence maps in confidence/ for 2 depth maps",
         files=_stray(**{"rec/confidence/000001.png": ""})),
    Case("lift-stray-video", LIFT_STRAY,
         "{here}/rec/rgb.mp4 cannot be read as a video", files=_stray()),
    Case("lift-r3d-not-zip", LIFT_R3D,
         "{here}/a.r3d is not a Record3D recording: not a readable ZIP archive", files={"a.r3d": b"PK junk"}),
    Case("lift-r3d-no-metadata", LIFT_R3D, "{here}/a.r3d has no 'metadata' entry",
         files={"a.r3d": _r3d({"omit": True})}),
    Case("lift-r3d-no-k", LIFT_R3D,
         "{here}/a.r3d/metadata has no 'K'", files={"a.r3d": _r3d({"w": 64, "h": 48, "dw": 16, "dh": 12})}),
    Case("lift-r3d-k-size", LIFT_R3D,
         "{here}/a.r3d/metadata: 'K' must be 9 numbers (a 3 x 3 matrix), got 4 values",
         files={"a.r3d": _r3d({"K": [50, 50, 31.5, 23.5], "w": 64, "h": 48, "dw": 16, "dh": 12})}),
    Case("lift-r3d-depth-not-lzfse", LIFT_R3D, "{here}/a.r3d/rgbd/0.depth does not decompress as LZFSE",
         files={"a.r3d": _r3d(depth=b"not lzfse")}),
    Case("lift-r3d-depth-bytes", LIFT_R3D, "{here}/a.r3d/rgbd/0.depth holds 8 bytes once decompressed",
         files={"a.r3d": _r3d(depth=_lzfse(bytes(8)))}),
    Case("synthetic-stray-odd-size", ("make-synthetic", "--out", "{here}/s", "--num-train", "0",
                                      "--num-val", "0", "--size", "65x48", "--layout", "stray"),
         "synthetic.layout stray writes an MPEG-4 video, whose width and height must be even"),
    Case("synthetic-layout", ("make-synthetic", "--out", "{here}/s", "--layout", "kinect"),
         "synthetic.layout must be one of 'pkmodel', 'stray', 'record3d', got 'kinect'"),
    # data tools
    Case("data-split-missing", ("data", "split", "{here}/no.json"),
         "prepared labels {here}/no.json do not exist"),
    Case("data-stats-not-json", ("data", "stats", "{here}/l.json"),
         "prepared labels {here}/l.json are not valid JSON", files={"l.json": "[1, 2"}),
    Case("data-merge-other", ("data", "merge", "{here}/l.json", "{here}/k.json", "--out",
                              "{here}/m"), "{here}/l.json is not a pkmodel prepared-labels file",
         files={"l.json": LABELS_OTHER, "k.json": LABELS_OTHER}),
    Case("data-fetch-missing", ("data", "fetch", "{here}/urls.txt", "--out", "{here}/f"),
         "URL list {here}/urls.txt does not exist"),
    Case("data-frames-both", ("data", "extract-frames", "{here}", "--out", "{here}/f"),
         "give exactly one of --every SECONDS or --count K"),
    Case("data-pseudo-weights", ("data", "pseudo-label", "{here}", "--weights", "{here}/no.pt",
                                 "--out", "{here}/p"), "weights file {here}/no.pt does not exist"),
    # model-info, benchmark
    Case("model-info-width", ("model-info", "--width", "0"), "model.width_mult = 0.0 must be in (0, 4]"),
    Case("benchmark-input-size", ("benchmark", "--quick", "--input-size", "100", "--out",
                                  "{here}/b.json"), "model.input_size = 100 must be a positive multiple of 32"),
]  # fmt: skip


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def battery(tmp_path_factory, tiny_synthetic, tiny_prepared):
    """Run every case at once (four at a time); returns {name: (case, result, folder, before)}."""
    import torch

    from pkmodel.config import load_config
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    root = tmp_path_factory.mktemp("bad_inputs")
    tiny = root / "tiny.toml"
    tiny.write_text(TINY)
    cfg = load_config(tiny, [], env={})
    torch.manual_seed(0)
    ckpt = root / "tiny.pt"
    model = build_model(cfg.model, pretrained=False)
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    shared = {"tiny": str(tiny), "ckpt": str(ckpt), "prepared": str(tiny_prepared),
              "synthetic": str(tiny_synthetic)}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKMODEL_")}
    env.update(COLUMNS="200", NO_COLOR="1", NO_ALBUMENTATIONS_UPDATE="1")

    def run(case: Case):
        here = root / case.name
        here.mkdir()
        for name, content in case.files.items():
            path = here / name
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        fill = {**shared, "here": str(here)}
        args = [a.format(**fill) for a in case.args]
        before = _snapshot(here)
        done = subprocess.run(
            [sys.executable, "-m", "pkmodel", *args], capture_output=True, text=True,
            cwd=here, env={**env, **case.env}, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        return case.name, (case, done, here, before, case.says.format(**fill))

    shared_before = _snapshot(tiny_prepared, tiny_synthetic, root.parent)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(run, CASES))
    assert _snapshot(tiny_prepared, tiny_synthetic) == {
        k: v
        for k, v in shared_before.items()
        if k.startswith((str(tiny_prepared), str(tiny_synthetic)))
    }
    return results


def test_the_battery_has_at_least_40_cases_with_distinct_names():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_bad_input_is_one_sentence_and_loses_nothing(battery, name):
    case, done, here, before, says = battery[name]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert says in lines[0], (says, lines[0])
    after = _snapshot(here)
    assert {k: after.get(k) for k in before} == before  # nothing that was there changed
