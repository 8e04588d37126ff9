import numpy as np
import pytest

from pkmodel.common.geometry import (
    crop_to_image,
    image_to_crop,
    letterbox_image,
    letterbox_params,
    square_crop_box,
    turn_image,
    unturn_points,
)


@pytest.mark.parametrize(("w", "h", "size"), [(640, 480, 192), (333, 500, 256), (100, 100, 192)])
def test_letterbox_round_trip_and_placement(w, h, size):
    img = np.zeros((h, w, 3), np.uint8)
    img[h // 2, w // 2] = 255
    canvas, lb = letterbox_image(img, size)
    assert canvas.shape == (size, size, 3)
    pts = np.array([[0.0, 0.0], [w, h], [w / 2, h / 3]])
    back = lb.to_image(lb.to_input(pts))
    assert np.allclose(back, pts, atol=1e-9)
    # The image corners land on the edges of the resized region inside the canvas.
    tl, br = lb.to_input(np.array([[0.0, 0.0], [w, h]]))
    assert min(tl) >= 0 and max(br) <= size
    assert max(br[0] - tl[0], br[1] - tl[1]) == pytest.approx(size)
    # A bright pixel stays where the mapping says (within the resize blur).
    cx, cy = lb.to_input(np.array([w // 2 + 0.5, h // 2 + 0.5]))
    ys, xs = np.nonzero(canvas[..., 0])
    assert abs(xs.mean() + 0.5 - cx) < 1.0 and abs(ys.mean() + 0.5 - cy) < 1.0


def test_letterbox_params_pad_the_short_side():
    lb = letterbox_params(400, 200, 192)
    assert lb.scale_x == pytest.approx(0.48) and lb.scale_y == pytest.approx(0.48)
    assert lb.pad_x == 0 and lb.pad_y == 48


def test_crop_round_trip_and_square_box():
    box = square_crop_box([10, 20, 50, 100], 1.25)
    assert np.allclose(box, [-27.5, 7.5, 125.0])
    pts = np.array([[35.0, 70.0, 2.0], [-27.5, 7.5, 1.0]])
    crop = image_to_crop(pts, box, 256)
    assert np.allclose(crop[1, :2], [0, 0]) and np.allclose(crop[:, 2], [2, 1])
    assert np.allclose(crop[0, :2], [128, 128])
    assert np.allclose(crop_to_image(crop, box, 256), pts)


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_turned_images_pixels_map_back_to_the_stored_ones(degrees):
    """Every pixel center of a 5 x 7 image, found in the image turned clockwise, maps back to
    where it was stored; a quarter turn swaps the sides."""
    height, width = 5, 7
    stored = np.arange(height * width).reshape(height, width)
    turned = turn_image(stored, degrees)
    assert turned.shape == ((height, width) if degrees in (0, 180) else (width, height))
    rows, cols = np.mgrid[0 : turned.shape[0], 0 : turned.shape[1]]
    centers = np.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2)
    back = unturn_points(centers, degrees, width, height)
    stored_rows, stored_cols = (back[:, 1] - 0.5).astype(int), (back[:, 0] - 0.5).astype(int)
    np.testing.assert_array_equal(stored[stored_rows, stored_cols], turned.reshape(-1))
    np.testing.assert_allclose(back % 1, 0.5)  # centers land on centers
    if degrees == 90:  # the turned image's top-left corner is the stored bottom-left one
        np.testing.assert_allclose(unturn_points(np.zeros(2), 90, width, height), [0, height])


def test_a_turn_that_is_not_a_quarter_is_refused():
    with pytest.raises(ValueError, match="one of"):
        turn_image(np.zeros((2, 3)), 45)
    with pytest.raises(ValueError, match="one of"):
        unturn_points(np.zeros(2), -90, 3, 2)


def test_odd_letterbox_padding_rounds_down_on_either_axis():
    from pkmodel.common.geometry import letterbox_params

    assert (letterbox_params(100, 51, 64).pad_x, letterbox_params(100, 51, 64).pad_y) == (0.0, 15.0)
    assert (letterbox_params(51, 100, 64).pad_x, letterbox_params(51, 100, 64).pad_y) == (15.0, 0.0)


def test_a_crop_box_past_the_image_edge_is_padded_where_it_lies():
    from pkmodel.common.images import crop_square

    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    crop = crop_square(image, [-2, -2, 4], 4)
    np.testing.assert_array_equal(crop[2:, 2:], image[:2, :2])
    assert not crop[:2].any() and not crop[:, :2].any()


def test_person_box_grows_only_when_asked():
    from pkmodel.data.prepare import person_box

    kps = np.array([[0.0, 0.0, 2.0], [50.0, 10.0, 2.0]])
    box = np.array([10.0, 0.0, 20.0, 20.0])
    np.testing.assert_array_equal(person_box(box, kps, cover_keypoints=False), box)
    np.testing.assert_allclose(person_box(box, kps, cover_keypoints=True), [-10.0, 0.0, 60.0, 20.0])
