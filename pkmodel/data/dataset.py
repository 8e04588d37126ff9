"""PoseDataset: prepared crops -> letterboxed, augmented network inputs with their targets.

One sample: the crop of ``prepare-coco`` letterboxed to ``model.input_size``; in training
mode a horizontal flip that swaps left/right joints (of the main person and of every other
person), then albumentations for scale / rotate / shift, crop and pad, colour, blur, noise
and occluding patches, each with its probability from ``[augment]``. Joints pushed out of the
image become visibility 0. Validation applies no augmentation at all.

Randomness is a function of (train.seed, epoch, index) only, so a sample looks the same
whichever DataLoader worker draws it and a resumed run repeats its epochs exactly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pkmodel.common.draw import OTHER_COLOR, draw_center, draw_skeleton, image_grid, put_label
from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import letterbox_image, letterbox_params
from pkmodel.common.images import jpeg_cut_short
from pkmodel.common.skeleton import FLIP_INDEX, NUM_JOINTS
from pkmodel.data.labels import first_bad_sample, read_labels
from pkmodel.data.targets import encode_targets
from pkmodel.model.outputs import OUTPUT_STRIDE

# Photometric magnitudes (probabilities live in the config; these ranges are the usual ones).
_COLOR = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.03}
_BLUR_KERNEL = (3, 7)
_NOISE_STD = (0.02, 0.08)  # fraction of the 0-255 range
_HOLES = (1, 3)
_HOLE_SIZE = (0.08, 0.25)  # fraction of the input side


@dataclass
class PoseSample:
    """One sample in network-input pixels, before it becomes tensors (for pictures and tests)."""

    image: np.ndarray  # S x S x 3 uint8 RGB
    keypoints: np.ndarray  # (K, 3) x, y, v; v = 0: no target (coordinates zeroed)
    center: np.ndarray  # (2,) main person center
    others: np.ndarray  # (M, K, 3) other people's joints, same convention
    other_centers: np.ndarray  # (M, 2)
    flipped: bool


def input_to_image(
    points: np.ndarray, crop_boxes: np.ndarray, crop_size: int, input_size: int
) -> np.ndarray:
    """Network-input pixels (N, ..., 2+) of un-augmented samples -> original image pixels.

    ``crop_boxes`` (N, 3) are the samples' ``crop_box``. Extra columns (scores, v) are kept.
    """
    lb = letterbox_params(crop_size, crop_size, input_size)
    pts = lb.to_image(points)  # input -> crop pixels
    boxes = np.asarray(crop_boxes, dtype=np.float64).reshape(len(pts), *([1] * (pts.ndim - 2)), 3)
    scale = boxes[..., 2] / crop_size  # crop -> original, as pkmodel.common.geometry.crop_to_image
    pts[..., 0] = boxes[..., 0] + pts[..., 0] * scale
    pts[..., 1] = boxes[..., 1] + pts[..., 1] * scale
    return pts


class PoseDataset(torch.utils.data.Dataset):
    """Prepared labels (``DATASET_DIR/NAME.json``) as training or validation samples.

    ``dataset[i]`` is a dict of tensors: ``image`` (3 x S x S float32 in [-1, 1], RGB), the
    targets of ``pkmodel.data.targets.encode_targets`` (heatmaps, centers, reg and offset values, masks),
    ``keypoints`` (K x 3, input pixels after augmentation, v = 0 where there is no target) and
    ``index`` (to find the sample's crop_box for mapping predictions back).
    """

    def __init__(self, labels_json: str | Path, cfg: Any, train: bool) -> None:

        self.labels_path = Path(labels_json)
        data = read_labels(self.labels_path)
        self.root = self.labels_path.parent
        self.crop_size = int(data["crop_size"])
        samples = data["samples"]
        # everything but the samples (annotation file, images, crop size) and the labels' folder
        self.header = {k: v for k, v in data.items() if k != "samples"}
        self.header["labels_dir"] = str(self.root)
        if not samples:
            raise PkmodelError(f"prepared labels {self.labels_path} hold no samples")
        self.cfg = cfg
        self.train = train
        self.input_size = int(cfg.model.input_size)
        self.seed = int(cfg.train.seed)
        self.epoch = 0
        # Labels live in NumPy arrays, not a list of dicts: DataLoader workers would otherwise
        # copy the whole list page by page (reference counts and the garbage collector write
        # to every object), ~GBs for COCO with many workers.
        try:
            self.image_files = np.array([s["image"] for s in samples])
            self.keypoints = np.array([s["keypoints"] for s in samples], np.float64)
            self.centers = np.array([s["center"] for s in samples], np.float64)
            self.crop_boxes = np.array([s["crop_box"] for s in samples], np.float64)
            others = [s.get("others") or [] for s in samples]
            counts = np.array([len(o) for o in others], np.int64)
            flat = [o for group in others for o in group]
            self.others_start = np.concatenate([[0], np.cumsum(counts)])
            self.others_keypoints = np.array([o["keypoints"] for o in flat], np.float64).reshape(-1, NUM_JOINTS, 3)  # fmt: skip
            self.others_centers = np.array([o["center"] for o in flat], np.float64).reshape(-1, 2)
        except (KeyError, ValueError, TypeError) as e:
            where = first_bad_sample(samples) or str(e)
            raise PkmodelError(
                f"prepared labels {self.labels_path} are malformed ({where})"
            ) from None
        if self.keypoints.shape[1:] != (NUM_JOINTS, 3):
            raise PkmodelError(
                f"prepared labels {self.labels_path} have keypoints of shape "
                f"{self.keypoints.shape[1:]}, expected ({NUM_JOINTS}, 3)"
            )
        # the size and SHA-1 of each crop file as prepare-coco wrote it (-1 and b"" where the
        # labels record none): a crop cut short or damaged since is refused before it is decoded,
        # as OpenCV decodes it with grey rows and only a libjpeg warning on stderr
        self.crop_sizes = np.array([_recorded_size(s) for s in samples], np.int64)
        self.crop_sha1 = np.array([_recorded_sha1(s) for s in samples], "S40")
        # evaluation needs the label dicts; a training set drops them (see above) and reads
        # them again only if asked
        self._samples: list[dict[str, Any]] | None = None if train else samples
        self._geometric = None  # albumentations pipelines, built on first use in each process
        self._photometric = None

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The label dicts of every sample (kept from the first read for evaluation; a
        training set reads them again on first use)."""
        if self._samples is None:
            self._samples = read_labels(self.labels_path)["samples"]
        return self._samples

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_samples=None, _geometric=None, _photometric=None)  # rebuilt in workers
        return state

    def __len__(self) -> int:
        return len(self.keypoints)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation of epoch e is the same in every run and every worker."""
        self.epoch = int(epoch)

    def image_path(self, index: int) -> Path:
        return self.root / str(self.image_files[index])

    def to_image(self, index: np.ndarray | int, points: np.ndarray) -> np.ndarray:
        """Input pixels of un-augmented samples -> original image pixels (by sample index)."""
        idx = np.atleast_1d(np.asarray(index))
        pts = np.asarray(points, dtype=np.float64).reshape(len(idx), *np.shape(points)[-2:])
        out = input_to_image(pts, self.crop_boxes[idx], self.crop_size, self.input_size)
        return out.reshape(np.shape(points))

    # --- one sample ---------------------------------------------------------------------------

    def _read_crop(self, index: int) -> np.ndarray:
        import cv2

        path = self.image_path(index)
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        problem = None if data is None else self._crop_problem(index, data)
        bgr = None
        if data and problem is None:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise PkmodelError(
                f"crop {path} listed in {self.labels_path} {problem or 'is missing or unreadable'} "
                "(run `pkmodel prepare-coco` again)"
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _crop_problem(self, index: int, data: bytes) -> str | None:
        """Why the bytes ``data`` of sample ``index``'s crop are not the file prepare-coco
        wrote (the size and SHA-1 the labels record; where they record neither, a JPEG cut
        short), or None. The SHA-1 of a 15 KB crop costs ~16 us, its read and decoding ~600 us."""
        size, sha1 = int(self.crop_sizes[index]), self.crop_sha1[index]
        if size >= 0 and len(data) != size:
            return (
                f"is {len(data)} bytes, not the {size} the labels record: cut short or changed "
                "since prepare-coco wrote it"
            )
        if sha1 and hashlib.sha1(data).hexdigest().encode() != sha1:
            return (
                "does not have the SHA-1 the labels record: damaged or changed since prepare-coco "
                "wrote it"
            )
        if size < 0 and not sha1 and jpeg_cut_short(data):
            return "is cut short: its JPEG data ends before the end of the image"
        return None

    def _others(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.others_start[index], self.others_start[index + 1]
        return self.others_keypoints[start:stop], self.others_centers[start:stop]

    def load_sample(
        self, index: int, augment: bool | None = None, epoch: int | None = None
    ) -> PoseSample:
        """The sample in input pixels; ``augment`` defaults to the dataset's training mode and
        ``epoch`` (which picks the augmentation) to the one ``set_epoch`` set."""
        augment = self.train if augment is None else augment
        epoch = self.epoch if epoch is None else epoch
        crop = self._read_crop(index)
        image, lb = letterbox_image(crop, self.input_size)
        kp = lb.to_input(self.keypoints[index])
        others, other_centers = self._others(index)
        others = lb.to_input(others)
        # All points travel together: main joints, others' joints, main center, others' centers.
        points = np.concatenate([kp[:, :2], others[..., :2].reshape(-1, 2),
                                 lb.to_input(self.centers[index])[None], lb.to_input(other_centers)])  # fmt: skip
        vis = np.concatenate([kp[:, 2], others[..., 2].reshape(-1)])
        flipped = False
        if augment:
            rng = np.random.default_rng([self.seed, epoch, index])
            flipped = bool(rng.random() < self.cfg.augment.flip_prob)
            if flipped:
                image, points, vis = flip_sample(image, points, vis, len(others))
            image, points, vis = self._augment(image, points, vis, int(rng.integers(2**31)))
        return self._finish(image, points, vis, len(others), flipped)

    def _augment(self, image: np.ndarray, points: np.ndarray, vis: np.ndarray, seed: int):
        if self._geometric is None:
            self._geometric, self._photometric = build_augmentations(
                self.cfg.augment, self.input_size
            )
        # Which steps run is drawn here, and albumentations runs only those: its own draw and
        # pipeline cost time per step even when the step does nothing.
        rng = np.random.default_rng(seed)
        n = len(vis)
        vis = np.where(_inside(points[:n], image.shape), vis, 0.0)
        for step, (p, transform) in enumerate(self._geometric):
            if rng.random() >= p:
                continue
            transform.set_random_seed(seed + step)
            # albumentations' geometric transforms put pixel centers at integers: shift by 0.5.
            out = transform(image=image, keypoints=points - 0.5)
            image, points = out["image"], np.asarray(out["keypoints"], np.float64) + 0.5
            # A joint that left the frame lost its pixels; a later zoom-out or pad would bring
            # it back onto black fill, so it loses its target now.
            vis = np.where(_inside(points[:n], image.shape), vis, 0.0)
        if image.shape[:2] != (self.input_size, self.input_size):  # crop & pad changed the size
            image, lb = letterbox_image(image, self.input_size)
            points = lb.to_input(points)
        for step, (p, transform) in enumerate(self._photometric, start=len(self._geometric)):
            if rng.random() < p:
                transform.set_random_seed(seed + step)
                image = transform(image=image)["image"]
        return image, points, vis

    def _finish(self, image, points, vis, n_others: int, flipped: bool) -> PoseSample:
        s = self.input_size
        k = NUM_JOINTS
        joints = points[: k * (1 + n_others)]
        inside = (joints >= 0).all(axis=1) & (joints < s).all(axis=1)
        vis = np.where(inside & (vis > 0), vis, 0.0)
        joints = np.where(vis[:, None] > 0, joints, 0.0)
        kps = np.concatenate([joints, vis[:, None]], axis=1).reshape(1 + n_others, k, 3)
        centers = points[k * (1 + n_others) :]
        # Others with no joint left in view and their center outside it give no target at all.
        keep = (kps[1:, :, 2] > 0).any(axis=1) | ((centers[1:] >= 0) & (centers[1:] < s)).all(1)
        return PoseSample(
            image=np.ascontiguousarray(image),
            keypoints=kps[0],
            center=centers[0],
            others=kps[1:][keep],
            other_centers=centers[1:][keep],
            flipped=flipped,
        )

    # --- tensors ------------------------------------------------------------------------------

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Sample ``index`` (augmented as in ``set_epoch``'s epoch) or, for the (epoch, index)
        keys of ``EpochKeySampler``, augmented as in that epoch."""

        _one_thread_per_worker()
        epoch, index = key if isinstance(key, tuple) else (None, key)
        sample = self.load_sample(index, epoch=epoch)
        targets = encode_targets(
            sample.keypoints,
            sample.center,
            sample.others,
            sample.other_centers,
            self.input_size,
            self.cfg.targets,
            stride=OUTPUT_STRIDE,
        )
        image = sample.image.astype(np.float32).transpose(2, 0, 1) / np.float32(127.5) - 1.0
        out = {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "keypoints": torch.from_numpy(sample.keypoints.astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        out.update({k: torch.as_tensor(v) for k, v in targets.items()})
        return out


_SHA1 = re.compile(r"[0-9a-f]{40}")


def _recorded_size(sample: dict[str, Any]) -> int:
    """A sample's ``crop_bytes``, or -1 where it has none (labels made by hand)."""
    size = sample.get("crop_bytes")
    ok = isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**63
    return size if ok else -1


def _recorded_sha1(sample: dict[str, Any]) -> bytes:
    """A sample's ``crop_sha1`` (40 hex digits, as ASCII), or b"" where it has none."""
    sha1 = sample.get("crop_sha1")
    return sha1.encode() if isinstance(sha1, str) and _SHA1.fullmatch(sha1) else b""


def _inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which points (N, 2) lie inside an image of this shape (continuous pixels)."""
    return (points >= 0).all(1) & (points[:, 0] < shape[1]) & (points[:, 1] < shape[0])


def flip_sample(
    image: np.ndarray, points: np.ndarray, vis: np.ndarray, n_others: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror the image and the points; joint j of every person becomes FLIP_INDEX[j].

    ``points`` holds (1 + n_others) x K joints followed by the centers; ``vis`` the joints'
    visibility. In continuous pixels a mirror is x -> width - x.
    """
    k = NUM_JOINTS
    width = image.shape[1]
    points = points.copy()
    points[:, 0] = width - points[:, 0]
    people = (1 + n_others) * k
    # Left and right swap names: the flipped left wrist is where the right wrist was.
    joints = points[:people].reshape(1 + n_others, k, 2)[:, FLIP_INDEX].reshape(-1, 2)
    vis = vis.reshape(1 + n_others, k)[:, FLIP_INDEX].reshape(-1)
    points = np.concatenate([joints, points[people:]])
    return np.ascontiguousarray(image[:, ::-1]), points, vis


def build_augmentations(aug: Any, input_size: int):
    """The albumentations steps as (probability, transform) pairs, each transform always on:
    geometric ones (with keypoints, applied one by one so joints leaving the frame are caught
    after each), then photometric ones (image only). The caller draws which steps run.

    The flip is not here: albumentations does not know left from right (see flip_sample).
    """
    import albumentations as A
    import cv2

    def with_keypoints(transform):
        return A.Compose([transform], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))  # fmt: skip

    geometric = [
        (
            aug.affine_prob,
            with_keypoints(
                A.Affine(
                    scale=(aug.scale_min, aug.scale_max),
                    rotate=(-aug.rotate_deg, aug.rotate_deg),
                    translate_percent=(-aug.shift, aug.shift),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=1.0,
                )
            ),
        ),
        # keep_size=False: the result is letterboxed back exactly (albumentations' own resize
        # maps keypoints with a half-pixel error).
        (
            aug.crop_pad_prob,
            with_keypoints(
                A.CropAndPad(
                    percent=(-aug.crop_pad_max, aug.crop_pad_max),
                    keep_size=False,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=1.0,
                )
            ),
        ),
    ]
    hole = (max(1, round(_HOLE_SIZE[0] * input_size)), max(1, round(_HOLE_SIZE[1] * input_size)))
    photometric = [
        (aug.color_prob, A.ColorJitter(**_COLOR, p=1.0)),
        (
            aug.blur_prob,
            A.OneOf(
                [A.GaussianBlur(blur_limit=_BLUR_KERNEL), A.MotionBlur(blur_limit=_BLUR_KERNEL)],
                p=1.0,
            ),
        ),
        (aug.noise_prob, A.GaussNoise(std_range=_NOISE_STD, p=1.0)),
        (
            aug.occlusion_prob,
            A.CoarseDropout(
                num_holes_range=_HOLES,
                hole_height_range=hole,
                hole_width_range=hole,
                fill="random_uniform",
                p=1.0,
            ),
        ),
    ]
    return geometric, photometric


def draw_sample(sample: PoseSample, caption: str = "") -> np.ndarray:
    """The sample's image with its people drawn (others first, the main person on top)."""

    image = sample.image.copy()
    for kp, c in zip(sample.others, sample.other_centers, strict=True):
        draw_skeleton(image, kp, color=OTHER_COLOR)
        draw_center(image, c, color=OTHER_COLOR)
    draw_skeleton(image, sample.keypoints)
    draw_center(image, sample.center)
    if caption:
        put_label(image, caption)
    return image


def sample_grid(
    labels_json: str | Path,
    cfg: Any,
    count: int = 16,
    cols: int = 4,
    epoch: int = 0,
    augment: bool = True,
) -> tuple[np.ndarray, int]:
    """A grid picture of the first ``count`` samples (augmented as in epoch ``epoch``)."""

    dataset = PoseDataset(labels_json, cfg, train=augment)
    dataset.set_epoch(epoch)
    n = min(count, len(dataset))
    pictures = []
    for i in range(n):
        sample = dataset.load_sample(i)
        pictures.append(draw_sample(sample, f"#{i}" + (" flip" if sample.flipped else "")))
    return image_grid(pictures, cols), n


_WORKER_THREADS_SET = False


def _one_thread_per_worker() -> None:
    """In a DataLoader worker, OpenCV gets one thread like torch does: N workers use N cores
    (OpenCV's default of one thread per core in every worker oversubscribes the CPU)."""
    global _WORKER_THREADS_SET
    if not _WORKER_THREADS_SET and torch.utils.data.get_worker_info() is not None:
        import cv2

        cv2.setNumThreads(1)
        _WORKER_THREADS_SET = True
