"""jpeg_cut_short against JPEGs written by other programs (the COCO photographs, Pillow's
baseline and progressive encoders, OpenCV's), whole and cut at many points."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pkmodel.common.images import jpeg_cut_short, read_rgb, read_rgb_turn

COCO_JPEG = Path(__file__).parents[3] / "shared/data/coco_mini/train2017/000000000790.jpg"


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: an APP1 segment before the image
    return exif.tobytes()


def encoders() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (9, 9), 3)
    out = {"opencv": cv2.imencode(".jpg", rgb)[1].tobytes()}
    for name, options in {
        "pillow": {},
        "pillow-progressive": {"progressive": True},
        "pillow-restart-markers": {"restart_marker_rows": 1},
        "pillow-exif": {"exif": exif_rotated()},
    }.items():
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=90, **options)
        out[name] = buffer.getvalue()
    return out


def cut_points(size: int) -> list[int]:
    return sorted({2, 3, 4, 20, 200, size // 3, size // 2, size - 100, size - 2, size - 1})


@pytest.mark.parametrize("name", list(encoders()))
def test_whole_jpegs_pass_and_every_cut_is_found(name):
    data = encoders()[name]
    assert not jpeg_cut_short(data)
    for k in cut_points(len(data)):
        assert jpeg_cut_short(data[:k]), k
    # what may follow the end-of-image marker: padding, a second picture (multi-picture files)
    assert not jpeg_cut_short(data + bytes(64))
    assert not jpeg_cut_short(data + encoders()["opencv"])
    assert not jpeg_cut_short(data + encoders()["opencv"][:100])


def test_a_cut_jpeg_is_what_opencv_reads_without_complaint(tmp_path):
    """The reason for the check: cv2.imread reads half a JPEG file into an image (with only a
    warning on stderr), and whether cv2.imdecode does differs between OpenCV versions."""
    data = encoders()["opencv"]
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    half = cv2.imread(str(tmp_path / "half.jpg"), cv2.IMREAD_COLOR)
    assert half is not None and half.shape == (120, 160, 3)
    # Pillow, the other reader, refuses it
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(data[:-9])) as im:
        im.load()


@pytest.mark.skipif(not COCO_JPEG.is_file(), reason=f"needs the COCO sample {COCO_JPEG}")
def test_a_coco_photograph_whole_and_cut():
    data = COCO_JPEG.read_bytes()
    assert not jpeg_cut_short(data)
    assert all(jpeg_cut_short(data[:k]) for k in cut_points(len(data)))


def test_other_bytes_are_not_jpegs():
    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    assert not jpeg_cut_short(png)
    assert not jpeg_cut_short(png[:10])
    assert not jpeg_cut_short(b"")
    assert jpeg_cut_short(b"\xff\xd8\xff\xe0\x00\x01")  # a segment length below 2


def test_a_photo_with_damaged_exif_tags_is_still_shown_turned(tmp_path):
    """A phone photo tagged 'rotate 90' whose other EXIF tags are damaged (Pillow's own
    exif_transpose raised struct.error on this block, written tag by tag): shown turned, as
    stored without asking, and never an exception other than a one-sentence ValueError."""
    import io
    import struct

    from PIL import Image

    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 5] = 255  # top right, stored; shown turned 90 degrees clockwise: bottom right
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "PNG")
    tags = [(0x0112, 3, 1, b"\x00\x06\x00\x00"),  # orientation 6, then four damaged tags
            (0xA005, 7, 4, bytes.fromhex("5256aef2")), (0x8769, 9, 0x12, bytes.fromhex("39bcb049")),
            (0xB71A, 7, 100, bytes.fromhex("1b64835a")), (0x8825, 6, 0, bytes.fromhex("95dc11d2"))]  # fmt: skip
    body = b"MM\0\x2a\0\0\0\x08" + struct.pack(">H", len(tags))
    body += b"".join(struct.pack(">HHI4s", *t) for t in tags) + b"\0\0\0\0"
    jpeg = io.BytesIO()
    Image.fromarray(stored).save(jpeg, "JPEG", quality=100)
    segment = b"Exif\0\0" + body
    data = jpeg.getvalue()[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg.getvalue()[2:]  # fmt: skip
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # Pillow's EXIF warnings stay quiet
        warnings.simplefilter("always")
        assert read_rgb(path).shape == (4, 6, 3)
        shown = read_rgb(path, shown=True)
        assert read_rgb_turn(path)[1] == 90
    assert shown.shape == (6, 4, 3) and shown[5, 3].mean() > 150 and shown[0, 0].mean() < 60
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_rgb_turn_stands_every_exif_orientation_upright(tmp_path, orientation):
    """Pillow's `ImageOps.exif_transpose` (its own reading of the EXIF orientation table) gives
    the picture as shown; the stored pixels turned by read_rgb_turn's degrees are that picture,
    or its left-right mirror for the mirroring orientations (2, 4, 5, 7)."""
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    rgb, turn = read_rgb_turn(path)
    np.testing.assert_array_equal(rgb, stored)
    upright = np.rot90(rgb, k=-(turn // 90))
    want = shown[:, ::-1] if orientation in (2, 4, 5, 7) else shown
    np.testing.assert_array_equal(upright, want)
    np.testing.assert_array_equal(read_rgb(path, shown=True), shown)
