"""The 2D -> 3D pipeline of `pkmodel lift`, its evaluation, and its pictures.

frames -> 2D joints (network or ground truth) -> depth at each joint -> back-projection (+ the
surface-to-joint correction) -> temporal smoothing -> canonical frame -> take. On sequences with
3D ground truth: MPJPE (camera and canonical frame), depth validity and jitter, for the chosen
settings and for the alternatives (correction off / on, each smoothing method).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel import __version__
from pkmodel.common.atomic import atomic_write_bytes, atomic_write_json, refuse_special
from pkmodel.common.camera import Intrinsics
from pkmodel.common.draw import draw_skeleton, put_label, save_image
from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import QUARTER_TURNS, letterbox_image, turn_image, unturn_points
from pkmodel.common.skeleton import (
    EXTENDED_JOINT_NAMES,
    FACE_JOINTS,
    LIMBS,
    NECK,
    NUM_JOINTS,
    PELVIS,
    add_derived_joints,
)
from pkmodel.config import LiftConfig
from pkmodel.engine.networks import load_network, network_device
from pkmodel.engine.predict import spread_indices, vote_turn
from pkmodel.lift.canonical import canonical_frame, hip_width, to_canonical
from pkmodel.lift.depth import (
    band_widens,
    band_width,
    lift_joints,
    lift_joints_app,
    surface_to_joint,
    to_depth_pixels,
)
from pkmodel.lift.rgbd import RgbdSequence
from pkmodel.lift.skeleton import (
    EDGES,
    SOURCE_CODES,
    TORSO_JOINTS,
    SkeletonFit,
    depth_noise,
    fit_skeleton,
)
from pkmodel.lift.smoothing import (
    SmoothingParams,
    offline_sigma_for,
    smooth_along_rays,
    smooth_sequence,
)
from pkmodel.lift.take import Take, TakeRecorder, write_take
from pkmodel.lift.widths import (
    LimbScale,
    WidthProfiles,
    concat_profiles,
    measure_limb_scale,
    profile_stride,
    scale_radius,
    width_profiles,
)
from pkmodel.model.decode import DecodeSettings, decode_batch

SMOOTHING_METHODS = ("none", "ema", "one_euro", "offline")
GROUND_TRUTH_2D = "ground-truth-2d"  # Joints2D.source of the labelled 2D joints
CAMERA_FRAME = "x right, y down, z forward (metres)"
CANONICAL_FRAME = (
    "origin at the pelvis; x toward the subject's left hip (right as seen facing the subject), "
    "y up, z forward (the way the chest faces); right-handed, determinant +1"
)
DEPTH_CHUNK = 32  # frames of depth held in memory at once
DEPTH_SOURCE_TEXT = (
    "one letter per COCO joint and frame: m = its own depth; placed on its ray at the bone's "
    "length because its depth was d = missing, o = in front of where the skeleton puts it "
    "(hidden), i = otherwise implausible; - = no 3D"
)


# --- 2D joints -------------------------------------------------------------------------------


@dataclass
class Joints2D:
    """2D joints of a sequence in colour-image pixels: NaN where not found or too unsure."""

    keypoints: np.ndarray  # (T, K, 2)
    scores: np.ndarray  # (T, K)
    source: str  # model id or "ground-truth-2d"


def ground_truth_joints(seq: RgbdSequence) -> Joints2D:
    """The labelled 2D joints (visibility > 0) with score 1; unlabelled ones are NaN."""
    if seq.ground_truth is None:
        raise PkmodelError(
            f"{seq.source or seq.name} has no ground-truth 2D joints; run with --weights instead"
        )
    kp = seq.ground_truth.keypoints_2d
    labelled = kp[..., 2] > 0
    xy = np.where(labelled[..., None], kp[..., :2], np.nan)
    return Joints2D(xy, labelled.astype(np.float64), GROUND_TRUTH_2D)


def checkpoint_id(path: Path) -> str:
    """A short, stable id of a weights file or bundle: its name and the start of the SHA-256 of
    its bytes (a bundle's files in sorted relative-path order, each path hashed too)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return f"{path.name} sha256:{digest.hexdigest()[:12]}"


class ModelJoints:
    """A network (checkpoint, ONNX or Core ML export) as a 2D joint detector for whole images
    (letterbox, network, decoder)."""

    def __init__(self, weights: Path, cfg: Any, device: str = "auto") -> None:

        cfg.decoder.check()
        network = load_network(weights, network_device(weights, device, key="lift.device"))
        self.device = network.device
        self.model = network.module
        self.input_size = network.input_size  # the size the network was trained at
        self.decoder = cfg.decoder
        self.min_score = cfg.lift.min_score
        self.model_id = checkpoint_id(Path(weights))

    def __call__(self, images: list[np.ndarray], turn: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 images of one size -> keypoints (N, K, 2) image pixels, scores (N, K).

        With ``turn`` (degrees) the network sees each image turned clockwise by that much, and
        the keypoints are given back in the images' own pixels. Joints the decoder does not
        find, or that score below lift.min_score, are NaN.
        """
        import torch

        height, width = images[0].shape[:2]
        boxed = [letterbox_image(turn_image(im, turn), self.input_size) for im in images]
        batch = np.stack([b for b, _ in boxed]).astype(np.float32) / 127.5 - 1.0
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        with torch.no_grad():
            outputs = self.model(x)
        grid = outputs[0].shape[-1]
        dec = decode_batch(outputs, DecodeSettings.for_grid(self.decoder, self.input_size, grid))
        letterbox = boxed[0][1]  # every frame of a recording has the same size
        keypoints = unturn_points(letterbox.to_image(dec.keypoints), turn, width, height)
        if self.decoder.style == "posekit-app":  # the app clamps each point to the frame
            keypoints = np.clip(keypoints, 0.0, np.array([width, height], np.float64))
        keep = dec.found & (dec.scores >= self.min_score)
        return np.where(keep[..., None], keypoints, np.nan), dec.scores


def choose_turn(seq: RgbdSequence, detector: ModelJoints) -> tuple[int, dict[str, Any]]:
    """lift.rotate = "auto": the clockwise turn (degrees) that stands the recording's person
    upright, and what it was chosen from: the camera's poses where the recording has them
    (:func:`turn_from_poses`), else the network (:func:`turn_from_network`)."""
    if seq.camera_rotations is not None:
        found = turn_from_poses(seq.camera_rotations)
        if found is not None:
            turn, frames = found
            return turn, {
                "source": "camera poses",
                "frames": {str(t): n for t, n in frames.items()},
            }
    turn, seen = turn_from_network(seq, detector)
    return turn, {"source": "network", "turns": {str(t): v for t, v in seen.items()}}


POSE_MIN_TILT = 0.5  # the share of gravity in the image plane below which a pose says nothing


def turn_from_poses(rotations: np.ndarray) -> tuple[int, dict[int, int]] | None:
    """The clockwise turn that brings gravity to the image's down most often over the frames,
    and per turn the frames that want it, from camera-to-world rotations (T, 3, 3; OpenCV
    camera axes, a world whose y is up: ARKit's). A frame whose camera looks nearly straight
    up or down (gravity less than POSE_MIN_TILT in the image plane) has no say; None when no
    frame has one."""
    down = np.einsum("tji,j->ti", rotations, np.array([0.0, -1.0, 0.0]))  # gravity, camera axes
    gx, gy = down[:, 0], down[:, 1]
    says = np.hypot(gx, gy) >= POSE_MIN_TILT
    if not says.any():
        return None
    # gravity to the image's right: the feet point right, and a quarter turn clockwise puts
    # the right side at the bottom
    wants = np.where(np.abs(gy) >= np.abs(gx), np.where(gy > 0, 0, 180), np.where(gx > 0, 90, 270))
    frames = {t: int((wants[says] == t).sum()) for t in QUARTER_TURNS}
    return max(QUARTER_TURNS, key=lambda t: (frames[t], t == 0)), frames


def turn_from_network(
    seq: RgbdSequence, detector: ModelJoints
) -> tuple[int, dict[int, dict[str, float]]]:
    """The clockwise turn (degrees) under which the network finds the most joints (scoring at
    least lift.min_score) in AUTO_TURN_FRAMES frames spread over the recording, and per turn
    the joints found and their mean score; the rule is `pkmodel predict --rotate auto`'s
    (:func:`pkmodel.engine.predict.upright_turn`)."""
    images = [seq.load_color(i) for i in spread_indices(len(seq))]

    def count(turn: int) -> tuple[int, float]:
        keypoints, scores = detector(images, turn)
        return int(np.isfinite(keypoints[..., 0]).sum()), float(np.mean(scores))

    return vote_turn(count, len(images))


def predict_joints(
    seq: RgbdSequence,
    detector: ModelJoints,
    batch_size: int,
    progress: bool = False,
    turn: int = 0,
) -> Joints2D:
    """Run the detector over every colour frame, in batches, each turned clockwise by ``turn``
    degrees for the network (the joints come back in the frames' own pixels)."""
    from tqdm import tqdm

    kps, scores = [], []
    shape = None
    starts = range(0, len(seq), batch_size)
    for start in tqdm(starts, desc=f"2D {seq.name}", unit="batch", disable=not progress):
        images = [seq.load_color(i) for i in range(start, min(start + batch_size, len(seq)))]
        for im, i in zip(images, range(start, len(seq)), strict=False):
            if shape is None:
                shape = im.shape
            elif im.shape != shape:
                raise PkmodelError(f"{seq.color_files[i]} has another size than the first frame")
        k, s = detector(images, turn)
        kps.append(k)
        scores.append(s)
    return Joints2D(np.concatenate(kps), np.concatenate(scores), detector.model_id)


# --- 3D --------------------------------------------------------------------------------------


@dataclass
class LiftResult:
    """Everything the pipeline computed for one sequence (T frames, K = 17 joints)."""

    timestamps: np.ndarray  # (T,)
    keypoints_2d: np.ndarray  # (T, K, 2) after the optional 2D smoothing
    scores: np.ndarray  # (T, K)
    surface: np.ndarray  # (T, K, 3) back-projected depth samples (no correction)
    depth_valid: np.ndarray  # (T, K) a depth sample exists
    joints_raw: np.ndarray  # (T, K, 3) with the correction when on, before smoothing
    joints: np.ndarray  # (T, K, 3) final (smoothed) camera-frame joints
    joints_ext: np.ndarray  # (T, 19, 3) with pelvis and neck
    canonical: np.ndarray  # (T, 19, 3)
    origin: np.ndarray  # (T, 3)
    rotation: np.ndarray  # (T, 3, 3)
    seconds: float  # time spent in depth sampling .. canonical
    hip_width_m: float | None = None  # the canonical frame's hip width (None: hip_prior off)
    skeleton: SkeletonFit | None = None  # the take's skeleton (None: lift.skeleton off)
    limb_radius: np.ndarray | None = None  # (K,) the correction's radii (None: no correction)
    limb_scale: LimbScale | None = None  # the radii's scale from the limb widths (None: off)
    band_noise: float = 0.0  # the depth band's growth with the range (metres at 1 m; 0: none)
    band_span: tuple[float, float] | None = None  # ranges (m) where the body's band is wider
    depth_level: np.ndarray | None = None  # (T, K) the depth's confidence level (-1: none)


def depth_windows(lift: LiftConfig) -> np.ndarray:
    """Each COCO joint's depth window (17,): ``lift.face_window`` (at most ``lift.window``) for
    the nose, eyes and ears, ``lift.window`` for the others. A face point is a small feature
    on a round head; at a phone's depth resolution a wider window reaches the cheeks, nearer
    than an ear, and the background."""
    windows = np.full(NUM_JOINTS, lift.window, dtype=np.int64)
    windows[list(FACE_JOINTS)] = face_window(lift)
    return windows


def face_window(lift: LiftConfig) -> int:
    """The face points' depth window as used: ``lift.face_window``, at most ``lift.window``."""
    return min(lift.face_window, lift.window)


@dataclass(frozen=True)
class SurfaceSamples:
    """What :func:`sample_surface` read from the depth maps."""

    points: np.ndarray  # (T, K, 3) back-projected depth at each joint (NaN: none)
    valid: np.ndarray  # (T, K) a depth sample exists
    widths: WidthProfiles | None  # depth across the limbs (None: not asked for)
    band_noise: float = 0.0  # metres at 1 m the depth band grew by (x range^2; 0: fixed band)
    band_span: tuple[float, float] | None = None  # ranges (m) where the body's band is wider
    levels: np.ndarray | None = None  # (T, K) confidence level of each sample (-1: no sample)


def sample_surface(
    seq: RgbdSequence,
    keypoints: np.ndarray,
    lift: LiftConfig,
    progress: bool = False,
    widths: bool = False,
) -> SurfaceSamples:
    """Back-projected depth at every joint, chunk by chunk, and with ``widths`` the depth
    across the limbs (:mod:`pkmodel.lift.widths`) on every n-th frame.

    The depth band (``lift.depth_band_m``) widens to ``lift.depth_band_noise_sds`` sds of the
    take's depth noise where that is wider: the noise is measured on the samples of a first
    pass (:func:`pkmodel.lift.skeleton.depth_noise`, :func:`noise_band`), and the chunks
    holding a joint whose band that widens (:func:`pkmodel.lift.depth.band_width`) are sampled
    again."""
    from tqdm import tqdm

    points, valid, levels, profiles = [], [], [], []
    stride = profile_stride(len(seq))
    radius = np.asarray(lift.limb_radius_m, dtype=np.float64)
    chunks = [range(s, min(s + DEPTH_CHUNK, len(seq))) for s in range(0, len(seq), DEPTH_CHUNK)]
    focal = 0.0
    for idx in tqdm(chunks, desc=f"3D {seq.name}", unit="chunk", disable=not progress):
        depth, conf = _load_chunk(seq, idx)
        if idx.start == 0:
            check_depth_aspect(seq, depth.shape[-1], depth.shape[-2])
            focal = seq.intrinsics.scaled_to(depth.shape[-1], depth.shape[-2]).fx
        p, v, lv = _sample_chunk(seq, keypoints[idx.start : idx.stop], depth, conf, lift, 0.0)
        points.append(p)
        valid.append(v)
        levels.append(lv)
        if widths and lift.depth_sampler == "pkmodel":
            profiles.append(_width_profiles(seq, depth, keypoints, idx, stride, radius))
    band_noise = noise_band(np.concatenate(points), lift)
    if band_noise > 0:
        band, windows = lift.depth_band_m, depth_windows(lift)
        for i, idx in enumerate(chunks):
            width = band_width(
                points[i][..., 2], window=windows, band=band, band_noise=band_noise, focal=focal
            )
            if not (width > band).any():
                continue  # every joint of the chunk keeps the band it was sampled with
            depth, conf = _load_chunk(seq, idx)
            kp = keypoints[idx.start : idx.stop]
            points[i], valid[i], levels[i] = _sample_chunk(seq, kp, depth, conf, lift, band_noise)
    span = band_widens(
        lift.depth_band_m, band_noise, window=lift.window, focal=focal, max_depth=lift.max_depth_m
    )
    return SurfaceSamples(
        np.concatenate(points),
        np.concatenate(valid),
        concat_profiles(profiles) if widths and profiles else None,
        band_noise,
        span,
        np.concatenate(levels),
    )


def noise_band(surface: np.ndarray, lift: LiftConfig) -> float:
    """How the depth band grows with the range (metres at 1 m; 0: it does not): the take's
    depth noise, measured on the first pass's samples ``surface`` (T, K, 3), times
    ``lift.depth_band_noise_sds``. 0 with the app's sampler (it has no band), without a band,
    and without the skeleton: a wider band lets more of the surfaces beside a joint in, and
    the gross errors that brings are caught by the skeleton's bones and by nothing else."""
    off = lift.depth_sampler != "pkmodel" or not _fits_skeleton(lift)
    if off or lift.depth_band_m <= 0 or lift.depth_band_noise_sds <= 0:
        return 0.0
    return lift.depth_band_noise_sds * depth_noise(np.linalg.norm(surface, axis=-1))


def _load_chunk(seq: RgbdSequence, idx: range) -> tuple[np.ndarray, np.ndarray | None]:
    """The depth maps (and confidence maps, or None) of frames ``idx``."""
    depth = np.stack([seq.load_depth(i) for i in idx])
    conf = None
    if seq.confidence_files is not None:
        conf = np.stack([seq.load_confidence(i) for i in idx])
    return depth, conf


def _sample_chunk(
    seq: RgbdSequence,
    keypoints: np.ndarray,
    depth: np.ndarray,
    conf: np.ndarray | None,
    lift: LiftConfig,
    band_noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-projected depth samples (T, K, 3), their validity (T, K) and confidence levels
    (T, K: the ARKit level of the pixels the depth came from, 2 without confidence maps as in
    the PoseKit app, -1 without a sample) of one chunk."""
    if lift.depth_sampler == "posekit-app":  # the app's sampler; no correction, no range
        p, app = lift_joints_app(
            keypoints, depth, seq.intrinsics, confidence=conf, mode=lift.app_depth_mode
        )
        return p, app.valid, np.where(app.valid, np.round(app.confidence * 2), -1).astype(np.int8)
    p, sample = lift_joints(
        keypoints,
        depth,
        seq.intrinsics,
        window=depth_windows(lift),
        min_depth=lift.min_depth_m,
        max_depth=lift.max_depth_m,
        confidence=conf,
        min_confidence=lift.min_confidence,
        band=lift.depth_band_m,
        band_noise=band_noise,
    )
    level = np.where(sample.confidence >= 0, sample.confidence, 2)  # -1 there: no map
    return p, sample.valid, np.where(sample.valid, level, -1).astype(np.int8)


def _width_profiles(
    seq: RgbdSequence,
    depth: np.ndarray,
    keypoints: np.ndarray,
    idx: range,
    stride: int,
    radius: np.ndarray,
) -> WidthProfiles:
    """The width profiles of the frames of chunk ``idx`` on the profile stride."""
    intr = seq.intrinsics
    height, width = depth.shape[-2:]
    frames = np.array([i for i in idx if i % stride == 0], dtype=np.int64)
    pixels = to_depth_pixels(keypoints[frames], (intr.width, intr.height), (width, height))
    focal = (intr.fx * width / intr.width, intr.fy * height / intr.height)
    return width_profiles(depth[frames - idx.start], pixels, frames, focal, radius)


def check_depth_aspect(seq: RgbdSequence, width: int, height: int) -> None:
    """Depth maps may be smaller than the colour image but must show the same view: the same
    aspect ratio (a depth map of another shape is cropped or not registered to the colour)."""
    intr = seq.intrinsics
    slack = 0.01 * width * intr.height + max(intr.width, intr.height)  # 1 pixel of rounding
    if abs(width * intr.height - height * intr.width) > slack:
        raise PkmodelError(
            f"depth image {seq.depth_files[0]} is {width} x {height} but the colour images are "
            f"{intr.width} x {intr.height}, another aspect ratio: depth must be registered to "
            "the colour image (the same view, any resolution)"
        )


def finish_3d(
    surface: np.ndarray,
    timestamps: np.ndarray,
    radius: np.ndarray | None,
    params: SmoothingParams,
    skeleton: tuple[np.ndarray, Any] | None = None,
    rays: tuple[Intrinsics, bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, SkeletonFit | None]:
    """Correction (when ``radius`` is given), the take's skeleton (when ``skeleton`` gives the
    2D keypoints and the intrinsics), then smoothing: (raw, smoothed, skeleton fit) joints.
    ``rays`` (see :func:`smooth_joints`) makes offline smoothing work along the joints' rays."""
    raw = surface if radius is None else surface_to_joint(surface, radius)
    fit = None
    if skeleton is not None:
        keypoints, intrinsics = skeleton
        fit = fit_skeleton(raw, keypoints, intrinsics, timestamps, radius)
        raw = fit.joints
    params = offline_window(params, raw, fit)
    return raw, smooth_joints(raw, timestamps, params, rays, _measured(fit)), fit


def smooth_joints(
    joints: np.ndarray,
    timestamps: np.ndarray,
    params: SmoothingParams,
    rays: tuple[Intrinsics, bool] | None,
    measured: np.ndarray | None = None,
) -> np.ndarray:
    """Camera-frame joints (T, K, 3) smoothed with ``params``. Offline smoothing, given ``rays``
    (the intrinsics, and whether the 2D joints are exact: ground truth), smooths each joint's
    depth along its ray and its pixel apart (:func:`pkmodel.lift.smoothing.smooth_along_rays`);
    the causal filters, and offline smoothing without ``rays``, smooth x, y and z alike.
    ``measured`` (T, K): which joints kept their own depth (the skeleton placed the others)."""
    if params.method != "offline" or rays is None:
        return smooth_sequence(joints, timestamps, params)
    return smooth_along_rays(joints, timestamps, params, *rays, measured)


def _measured(fit: SkeletonFit | None) -> np.ndarray | None:
    """(T, 17) which joints kept their measured depth in ``fit`` (None without a fit: all)."""
    return None if fit is None else fit.measured


def offline_window(
    params: SmoothingParams, joints: np.ndarray, fit: SkeletonFit | None = None
) -> SmoothingParams:
    """``params`` with the take's depth noise (which sets the depth jumps of offline smoothing)
    and offline smoothing's window set from it when ``lift.offline_sigma_s`` is 0
    (:func:`pkmodel.lift.smoothing.offline_sigma_for`)."""
    if params.method != "offline":
        return params
    noise = fit.noise_m_at_1m if fit is not None else depth_noise(np.linalg.norm(joints, axis=-1))
    sigma = params.offline_sigma_s if params.offline_sigma_s > 0 else offline_sigma_for(noise)
    return replace(params, offline_sigma_s=sigma, depth_noise_m=noise)


class _Steps:
    """A progress bar over named steps that shows the one under way: the work after the
    depth maps' bar runs for minutes on a long take and would otherwise show nothing."""

    def __init__(self, names: list[str], desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.names = names
        self.bar = tqdm(total=len(names), desc=desc, unit="step", disable=not enabled)
        self.bar.set_postfix_str(names[0])

    def done(self) -> None:
        """The step under way is done; the next one starts (the bar closes after the last)."""
        self.bar.update(1)
        if self.bar.n < len(self.names):
            self.bar.set_postfix_str(self.names[self.bar.n])
        else:
            self.bar.close()

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()  # a step that failed ends its bar's line before the error's


def lift_sequence(
    seq: RgbdSequence, joints: Joints2D, lift: LiftConfig, progress: bool = False
) -> LiftResult:
    """Depth, back-projection, correction, smoothing and canonical frame for a sequence."""
    lift.check()
    start = time.perf_counter()
    keypoints = joints.keypoints
    if lift.smooth_2d:  # pixels, not metres: One-Euro's speed term has its own coefficient
        params_2d = replace(SmoothingParams.from_config(lift), beta=lift.one_euro_beta_2d)
        keypoints = smooth_sequence(keypoints, seq.timestamps, params_2d)
    measure = _corrects(lift) and lift.limb_widths
    samples = sample_surface(seq, keypoints, lift, progress, widths=measure)
    surface, valid = samples.points, samples.valid
    radius = np.asarray(lift.limb_radius_m, dtype=np.float64) if _corrects(lift) else None
    scale = None
    if radius is not None and samples.widths is not None:
        scale = measure_limb_scale(surface, samples.widths, radius)
        radius = scale_radius(radius, scale.scale)
    skeleton = (keypoints, seq.intrinsics) if _fits_skeleton(lift) else None
    rays = (seq.intrinsics, joints.source == GROUND_TRUTH_2D)
    with _Steps(["skeleton and smoothing", "canonical frame"], f"fit {seq.name}", progress) as steps:  # fmt: skip
        raw, final, fit = finish_3d(
            surface, seq.timestamps, radius, SmoothingParams.from_config(lift), skeleton, rays
        )
        torso = None
        if fit is not None:
            params = offline_window(SmoothingParams.from_config(lift), raw, fit)
            torso = smooth_sequence(fit.torso, seq.timestamps, params)
        steps.done()
        ext, canonical, origin, rotation, width = canonical_pose(final, lift, torso)
        steps.done()
    return LiftResult(
        timestamps=seq.timestamps,
        keypoints_2d=keypoints,
        scores=joints.scores,
        surface=surface,
        depth_valid=valid,
        joints_raw=raw,
        joints=final,
        joints_ext=ext,
        canonical=canonical,
        origin=origin,
        rotation=rotation,
        seconds=time.perf_counter() - start,
        hip_width_m=width,
        skeleton=fit,
        limb_radius=radius,
        limb_scale=scale,
        band_noise=samples.band_noise,
        band_span=samples.band_span,
        depth_level=samples.levels,
    )


def _corrects(lift: LiftConfig) -> bool:
    """Surface-to-joint correction is on (never with the app's sampler: the app has none)."""
    return lift.surface_correction and lift.depth_sampler == "pkmodel"


def _fits_skeleton(lift: LiftConfig) -> bool:
    """The per-take skeleton is on (it works on corrected joints; the app has none)."""
    return lift.skeleton and _corrects(lift)


def selected_variant(lift: LiftConfig) -> str:
    """The metrics variant of the run's own settings."""
    depth = "skeleton" if _fits_skeleton(lift) else "config_radius" if _corrects(lift) else "off"
    return f"{depth}/{lift.smoothing}"


def depth_source_rows(fit: SkeletonFit | None, joints: np.ndarray) -> list[str]:
    """One string per frame, one letter per joint (take metadata ``depth_source``): the
    skeleton's codes, or without it "m" where a joint has 3D and "-" where not."""
    if fit is not None:
        codes = fit.source
    else:
        codes = np.where(np.isfinite(joints).all(axis=-1), SOURCE_CODES["measured"], SOURCE_CODES["none"])  # fmt: skip
    return ["".join(row) for row in codes.tolist()]


def depth_level_rows(levels: np.ndarray) -> list[str]:
    """One string per frame, one character per joint (take metadata ``depth_level``): the
    confidence level (0 low, 1 medium, 2 high; 2 without confidence maps) of the depth sample
    the joint's depth came from, "-" where it has none."""
    chars = np.where(levels >= 0, np.clip(levels, 0, 2).astype(str), "-")
    return ["".join(row) for row in chars.tolist()]


def bone_spread(joints: np.ndarray) -> dict[str, float]:
    """Per bone (both sides of a mirrored one), the sd of its length over the take in mm: a
    rigid bone's should be 0, whatever the ground truth (NaN-free; bones never seen left out)."""
    out = {}
    for a, b, name in EDGES:
        lengths = np.linalg.norm(joints[:, a] - joints[:, b], axis=-1)
        lengths = lengths[np.isfinite(lengths)]
        if lengths.size >= 2:
            out[f"{name}:{a}-{b}"] = float(np.std(lengths) * 1000.0)
    return out


def canonical_pose(
    joints: np.ndarray, lift: LiftConfig, torso: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None]:
    """Camera-frame joints (T, 17, 3) -> (joints with pelvis and neck, canonical joints,
    origin, rotation, hip width used).

    With the take's fitted torso (T, 4, 3: shoulders, hips; :class:`SkeletonFit`), the frame
    is built from it where it was fitted (a rigid torso pose agreed with the depths), and the
    pelvis and neck are its midpoints: a hidden hip's depth decides nothing. Elsewhere, and
    without a torso, from the joints themselves, with ``lift.hip_prior``'s completion of a
    turned person's hidden hip."""
    ext = add_derived_joints(joints)
    width = canonical_hip_width(joints, lift)
    if torso is None:
        canonical, origin, rotation = to_canonical(ext, width)
        return ext, canonical, origin, rotation, width
    frame = ext.copy()
    fitted = np.isfinite(torso).all(axis=(-1, -2))
    for i, k in enumerate(TORSO_JOINTS):
        frame[fitted, k] = torso[fitted, i]
    frame = add_derived_joints(frame[:, :NUM_JOINTS])
    ext[fitted, PELVIS] = frame[fitted, PELVIS]
    ext[fitted, NECK] = frame[fitted, NECK]
    origin, rotation = canonical_frame(frame, width)
    origin[fitted], rotation[fitted] = canonical_frame(frame[fitted], None)
    canonical = np.einsum("...ij,...kj->...ki", rotation, ext - origin[..., None, :])
    return ext, canonical, origin, rotation, width


def canonical_hip_width(joints: np.ndarray, lift: LiftConfig) -> float | None:
    """The hip width the canonical frame places a hidden hip with (metres): lift.hip_width_m,
    or when 0 the recording's own (:func:`pkmodel.lift.canonical.hip_width`); None with
    lift.hip_prior off."""
    if not lift.hip_prior:
        return None
    return float(lift.hip_width_m) if lift.hip_width_m > 0 else hip_width(joints)


def _radius_metrics(result: LiftResult) -> dict[str, Any]:
    """The correction's radii as run, and their scale from the limb widths (metrics and take
    metadata)."""
    if result.limb_radius is None:
        return {"limb_radius_m": None, "limb_scale": None, "limb_scale_samples": None}
    scale = result.limb_scale
    return {
        "limb_radius_m": [round(float(r), 4) for r in result.limb_radius],
        "limb_scale": None if scale is None else round(scale.scale, 3),
        "limb_scale_samples": None if scale is None else scale.samples,
    }


def _band_metrics(result: LiftResult, lift: LiftConfig) -> dict[str, Any]:
    """How the depth band grew with the noise: per metre^2 of range, and the ranges over which
    the body's joints got a band wider than ``lift.depth_band_m`` (null ``from``: never; null
    ``until``: up to ``lift.max_depth_m``)."""
    span = result.band_span
    until = None if span is None or span[1] >= lift.max_depth_m else round(span[1], 2)
    return {
        "depth_band_noise_m_at_1m": round(result.band_noise, 5),
        "depth_band_widens_from_m": None if span is None else round(span[0], 2),
        "depth_band_widens_until_m": until,
    }


def build_take(
    seq: RgbdSequence,
    result: LiftResult,
    lift: LiftConfig,
    model_id: str,
    rotate_deg: int | None = None,
) -> Take:
    """Record the frames (with pelvis and neck: 19 joints) into a take with full metadata."""
    meta = {
        "format": "pkmodel-take",
        "created_by": f"pkmodel {__version__}",
        "sequence": seq.name,
        "source": str(seq.source) if seq.source else None,
        "model": model_id,
        "units": {
            "timestamp": "s",
            "keypoints_2d": "px (colour image, pixel centers at +0.5)",
            "scores": "keypoint score 0..1",
            "joints_camera": "m",
            "joints_canonical": "m",
            "origin": "m",
        },
        "camera_frame": CAMERA_FRAME,
        "canonical_frame": CANONICAL_FRAME,
        "intrinsics": seq.intrinsics.to_dict(),
        "intrinsics_convention": "OpenCV: pixel (i, j) center at (i, j)",
        "depth_unit_m": seq.depth_unit_m,
        "lift": {
            "window": lift.window,
            "face_window": face_window(lift),
            "depth_band_m": lift.depth_band_m,
            "depth_band_noise_sds": lift.depth_band_noise_sds,
            "depth_band_noise_m_at_1m": round(result.band_noise, 5),
            "min_confidence": lift.min_confidence,
            "min_score": lift.min_score,
            "min_depth_m": lift.min_depth_m,
            "max_depth_m": lift.max_depth_m,
            "surface_correction": _corrects(lift),
            "depth_sampler": lift.depth_sampler,
            "app_depth_mode": lift.app_depth_mode,
            "limb_radius_config_m": list(lift.limb_radius_m),
            "limb_widths": lift.limb_widths,
            **_radius_metrics(result),
            "smoothing": lift.smoothing,
            "smooth_2d": lift.smooth_2d,
            "one_euro": [lift.one_euro_min_cutoff, lift.one_euro_beta, lift.one_euro_d_cutoff],
            "ema_alpha": lift.ema_alpha,
            "max_gap_s": lift.max_gap_s,
            "skeleton": _fits_skeleton(lift),
            "offline_sigma_s": lift.offline_sigma_s,
            "hip_prior": lift.hip_prior,
            "hip_width_m": (
                round(result.hip_width_m, 4)
                if result.hip_width_m is not None and np.isfinite(result.hip_width_m)
                else None
            ),
        },
    }
    fit = result.skeleton
    if fit is not None:
        meta["lift"]["bone_lengths_m"] = {
            k: round(v, 4) if np.isfinite(v) else None for k, v in fit.lengths.items()
        }
        meta["lift"]["depth_noise_m_at_1m"] = round(fit.noise_m_at_1m, 5)
    if rotate_deg is not None:  # the network saw the frames turned (its 2D is in stored pixels)
        meta["lift"]["rotate_deg"] = rotate_deg
    meta["depth_source_codes"] = DEPTH_SOURCE_TEXT
    meta["depth_source"] = depth_source_rows(fit, result.joints)
    if result.depth_level is not None:
        meta["depth_level"] = depth_level_rows(result.depth_level)
    recorder = TakeRecorder(EXTENDED_JOINT_NAMES, meta)
    pad = np.full((len(seq), len(EXTENDED_JOINT_NAMES) - NUM_JOINTS), np.nan)
    kp2d = add_derived_joints(result.keypoints_2d)  # 2D pelvis / neck: image midpoints
    scores = np.concatenate([result.scores, pad], axis=1)
    for t in range(len(seq)):
        recorder.append(
            timestamp=float(result.timestamps[t]),
            keypoints_2d=kp2d[t],
            scores=scores[t],
            joints_camera=result.joints_ext[t],
            joints_canonical=result.canonical[t],
            origin=result.origin[t],
            rotation=result.rotation[t],
            index=t,
        )
    return recorder.take()


# --- evaluation ------------------------------------------------------------------------------


def joint_errors(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Euclidean errors (mm) of the joints in ``mask`` that both sides know."""
    known = mask & np.isfinite(pred).all(-1) & np.isfinite(truth).all(-1)
    return np.linalg.norm(pred[known] - truth[known], axis=-1) * 1000.0


def accelerations(
    points: np.ndarray, timestamps: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Acceleration magnitudes (m/s^2) of every joint (T, K, 3) at every frame with both
    neighbours known (and in ``mask`` (T, K) in all three frames): the second difference over
    uneven time steps."""
    t = np.asarray(timestamps, dtype=np.float64)
    if len(t) < 3:
        return np.zeros(0)
    dt1, dt2 = np.diff(t)[:-1], np.diff(t)[1:]
    v1 = (points[1:-1] - points[:-2]) / dt1[:, None, None]
    v2 = (points[2:] - points[1:-1]) / dt2[:, None, None]
    acc = (v2 - v1) / ((dt1 + dt2) / 2.0)[:, None, None]
    norm = np.linalg.norm(acc, axis=-1)
    keep = np.isfinite(norm)
    if mask is not None:
        keep &= mask[:-2] & mask[1:-1] & mask[2:]
    return norm[keep]


def _mean(values: Iterable[np.ndarray]) -> float | None:
    v = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in values] or [np.zeros(0)])
    return round(float(v.mean()), 4) if v.size else None


def _canonical_truth(truth: np.ndarray) -> np.ndarray:
    return to_canonical(add_derived_joints(truth))[0][..., :NUM_JOINTS, :]


def evaluation_parts(
    seq: RgbdSequence, joints: Joints2D, result: LiftResult, lift: LiftConfig
) -> dict[str, Any]:
    """Per-joint errors, accelerations, bone-length spreads and counts of one sequence, for
    every variant; pooled over sequences by :func:`summarise`.

    Variants: depth as sampled (``off``), with the run's radii (``config_radius``: the config's,
    scaled to the take's limb widths when ``lift.limb_widths``), with them and the take's
    skeleton (``skeleton``), with the sequence's true radii (``true_radius``, when known) x
    smoothing none / ema / one_euro / offline. What needs no ground truth (depth
    validity, jitter, bone-length spread, the share of joints the skeleton placed) is measured
    on every recording; errors only where the recording has 3D ground truth.
    """
    gt = seq.ground_truth
    has_truth = gt is not None and np.isfinite(gt.joints_3d).any()
    have_2d = np.isfinite(joints.keypoints).all(-1)
    config_radius = np.asarray(lift.limb_radius_m)
    if result.limb_radius is not None:
        config_radius = result.limb_radius
    depths: dict[str, tuple[np.ndarray | None, bool]] = {
        "off": (None, False),
        "config_radius": (config_radius, False),
        "skeleton": (config_radius, True),
    }
    parts: dict[str, Any] = {"depth_valid": [result.depth_valid[have_2d]], "variants": {}}
    if has_truth:
        truth = gt.joints_3d
        vis = gt.keypoints_2d[..., 2] == 2
        labelled = gt.keypoints_2d[..., 2] > 0
        truth_canon = _canonical_truth(truth)
        # frames whose hips and shoulders are all visible: the canonical frame is not guessed
        # from an occluded joint's depth (a side view's far hip samples the near one's surface)
        torso = vis[:, list(TORSO_JOINTS)].all(axis=1)
        parts.update(
            depth_valid_visible=[result.depth_valid[have_2d & vis]],
            found_visible=[have_2d[vis]],
            gt_jitter=[accelerations(truth, seq.timestamps)],
            gt_jitter_visible=[accelerations(truth, seq.timestamps, vis)],
        )
        if gt.limb_radius is not None:
            depths["true_radius"] = (gt.limb_radius, False)
    selected = selected_variant(lift)
    rays = (seq.intrinsics, joints.source == GROUND_TRUTH_2D)
    for depth, (radius, skeleton) in depths.items():
        if skeleton and result.skeleton is not None:  # the run's own fit, of the same inputs
            raw, fit = result.joints_raw, result.skeleton
        else:  # rays through the pixels the depth was sampled at (after any 2D smoothing)
            placed = (result.keypoints_2d, seq.intrinsics) if skeleton else None
            none = SmoothingParams("none")
            raw, _, fit = finish_3d(result.surface, seq.timestamps, radius, none, placed)
        for method in dict.fromkeys((*SMOOTHING_METHODS, lift.smoothing)):
            params = offline_window(SmoothingParams.from_config(lift, method), raw, fit)
            pred = smooth_joints(raw, seq.timestamps, params, rays, _measured(fit))
            spread = bone_spread(pred)
            variant: dict[str, list[np.ndarray]] = {
                "jitter_m_s2": [accelerations(pred, seq.timestamps)],
                "bone_spread_mm": [np.array(list(spread.values()))],
                "inferred_rate": [
                    fit.inferred[have_2d] if fit is not None else np.zeros(int(have_2d.sum()))
                ],
            }
            name = f"{depth}/{method}"
            if name == selected:
                parts["bone_spread_selected"] = spread
            if has_truth:
                fitted = None
                if fit is not None:
                    fitted = smooth_sequence(fit.torso, seq.timestamps, params)
                canon = canonical_pose(pred, lift, fitted)[1][..., :NUM_JOINTS, :]
                variant.update(
                    coverage_visible=[np.isfinite(pred).all(axis=-1)[vis]],
                    mpjpe_visible_mm=[joint_errors(pred, truth, vis)],
                    mpjpe_all_mm=[joint_errors(pred, truth, labelled)],
                    mpjpe_canonical_visible_mm=[joint_errors(canon, truth_canon, vis)],
                    mpjpe_canonical_torso_visible_mm=[
                        joint_errors(canon[torso], truth_canon[torso], vis[torso])
                    ],
                    jitter_visible_m_s2=[accelerations(pred, seq.timestamps, vis)],
                )
            parts["variants"][name] = variant
    return parts


_TRUTH_METRICS = (
    "coverage_visible",
    "mpjpe_visible_mm",
    "mpjpe_all_mm",
    "mpjpe_canonical_visible_mm",
    "mpjpe_canonical_torso_visible_mm",
    "jitter_visible_m_s2",
)


def summarise(parts_list: list[dict[str, Any]], lift: LiftConfig) -> dict[str, Any]:
    """Pool the parts of one or more sequences into the metrics written to metrics.json.

    Errors need every sequence to have ground truth; a mix of recordings with and without it
    pools what all of them have (the errors are then per sequence only)."""
    parts_list = [p for p in parts_list if p]
    if not parts_list:
        return {}

    def pool(key: str) -> list[np.ndarray]:
        return [a for p in parts_list for a in p.get(key, [])]

    truth = all("gt_jitter" in p for p in parts_list)
    variants: dict[str, dict[str, float | None]] = {}
    for name in parts_list[0]["variants"]:
        if not all(name in p["variants"] for p in parts_list):
            continue
        metrics = [m for m in parts_list[0]["variants"][name] if truth or m not in _TRUTH_METRICS]
        variants[name] = {
            metric: _mean(a for p in parts_list for a in p["variants"][name][metric])
            for metric in metrics
        }
    chosen = selected_variant(lift)
    by_bone: dict[str, list[float]] = {}
    for p in parts_list:
        for bone, value in p.get("bone_spread_selected", {}).items():
            by_bone.setdefault(bone, []).append(value)
    out: dict[str, Any] = {
        "selected": chosen,
        **variants[chosen],
        "bone_spread_by_bone_mm": {k: round(float(np.mean(v)), 2) for k, v in by_bone.items()},
        "depth_validity_rate": _mean(pool("depth_valid")),
    }
    if truth:
        out.update(
            depth_validity_rate_visible=_mean(pool("depth_valid_visible")),
            found_rate_visible=_mean(pool("found_visible")),
            visible_joints_with_2d=sum(int(a.size) for a in pool("depth_valid_visible")),
            gt_jitter_m_s2=_mean(pool("gt_jitter")),
            gt_jitter_visible_m_s2=_mean(pool("gt_jitter_visible")),
        )
    out["variants"] = variants
    return out


# --- pictures --------------------------------------------------------------------------------


def write_overlays(
    seq: RgbdSequence, result: LiftResult, folder: Path, progress: bool = False
) -> None:
    """The 2D skeleton on every colour frame, with its depth-less joints left out of 3D
    (drawn as found), into ``folder/NNNNNN.png``."""
    from tqdm import tqdm

    found = np.isfinite(result.keypoints_2d).all(-1)
    for t in tqdm(range(len(seq)), desc=f"overlays {seq.name}", unit="frame", disable=not progress):
        image = seq.load_color(t)
        draw_skeleton(image, result.keypoints_2d[t], visible=found[t])
        n3d = int(np.isfinite(result.joints[t]).all(-1).sum())
        put_label(image, f"{t}  t={result.timestamps[t]:.3f}s  3D {n3d}/{NUM_JOINTS}")
        save_image(folder / f"{t:06d}.png", image)


def plot_canonical_sheet(
    canonical: np.ndarray,
    timestamps: np.ndarray,
    path: Path,
    frames: int = 12,
    truth: np.ndarray | None = None,
    title: str = "",
) -> None:
    """A contact sheet of the canonical 3D pose (up to ``frames`` evenly spaced frames).

    Drawn with the canonical y axis up; ground truth (when given) in grey underneath.
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(canonical)
    picks = np.unique(np.linspace(0, n - 1, min(frames, n)).round().astype(int))
    cols = min(4, len(picks))
    rows = -(-len(picks) // cols)
    fig = plt.figure(figsize=(3.2 * cols, 3.4 * rows))
    limbs = np.asarray(LIMBS)
    for k, t in enumerate(picks):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        layers = [(truth, "0.7", 1.0)] if truth is not None else []
        for pose, color, width in [*layers, (canonical, "tab:blue", 2.0)]:
            p = pose[t]
            for a, b in limbs:
                if np.isfinite(p[[a, b]]).all():
                    # matplotlib's z is up: plot (x, z, y) of the canonical frame
                    ax.plot(p[[a, b], 0], p[[a, b], 2], p[[a, b], 1], color=color, lw=width)
            ok = np.isfinite(p).all(-1)
            ax.scatter(p[ok, 0], p[ok, 2], p[ok, 1], color=color, s=6)
        # (x, z, y) of a right-handed frame is a mirror image: reversing the z-forward axis
        # undoes it, and the default view then looks at the subject from the front.
        ax.set(xlim=(-0.8, 0.8), ylim=(0.8, -0.8), zlim=(-1.0, 0.9))
        ax.set_box_aspect((1.6, 1.6, 1.9))
        # ticks every 0.5 m without numbers: the scale reads from the grid, the poses stay big
        ax.set(xticks=[-0.5, 0, 0.5], yticks=[-0.5, 0, 0.5], zticks=[-1, -0.5, 0, 0.5])
        ax.set(xticklabels=[], yticklabels=[], zticklabels=[])
        ax.set_xlabel("x right", fontsize=7, labelpad=-12)
        ax.set_ylabel("z forward", fontsize=7, labelpad=-12)
        ax.set_zlabel("y up", fontsize=7, labelpad=-12)
        ax.view_init(elev=15, azim=-60)
        ax.set_title(f"frame {t}  t={timestamps[t]:.2f}s", fontsize=8, pad=0)
    if title:
        fig.suptitle(f"{title}\ngrid: 0.5 m", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# --- the whole command -----------------------------------------------------------------------


# What a run writes for a recording, by the names it replaces (pictures only when it draws).
TAKE_OUTPUTS = ("take.json", "take.bin", "take.zip", "posekit_take", "posekit_take.zip")


def run_lift(
    sequences: list[RgbdSequence],
    cfg: Any,
    out_dir: Path,
    detector: ModelJoints | None = None,
    progress: bool = False,
    pictures: bool = True,
) -> dict[str, Any]:
    """Lift every sequence (ground-truth 2D when ``detector`` is None), write the takes (in
    ``lift.take_format``), pictures and metrics.json, and return the metrics.

    Everything is written into a staging folder inside ``out_dir`` first and moved into
    OUT/NAME only once every recording is done: a run that fails leaves the earlier results
    as they were. A recording's earlier takes in another format are removed then; its
    earlier pictures are replaced only by new ones."""
    import os
    import shutil

    lift = cfg.lift
    lift.check()
    names = [s.name for s in sequences]
    if len(set(names)) != len(names):
        raise PkmodelError("input holds two recordings with the same folder name")
    staging = Path(out_dir) / f".pkmodel-lift-{os.getpid()}"
    try:
        doc = _lift_into(sequences, cfg, staging, out_dir, detector, progress, pictures)
        # metrics.json is written (and so checked) before any recording is published, and
        # renamed into place last: a run that fails leaves the earlier results as a whole
        refuse_special(Path(out_dir) / "metrics.json")
        atomic_write_json(staging / "metrics.json", doc)
        for name in names:
            _publish(staging / name, Path(out_dir) / name)
        os.replace(staging / "metrics.json", Path(out_dir) / "metrics.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return doc


def _lift_into(
    sequences: list[RgbdSequence],
    cfg: Any,
    staging: Path,
    out_dir: Path,
    detector: ModelJoints | None,
    progress: bool,
    pictures: bool,
) -> dict[str, Any]:
    """:func:`run_lift`'s work: every recording's outputs into STAGING/NAME, and the metrics,
    whose take paths name where the outputs will be (OUT/NAME)."""
    from pkmodel.lift.posekit_take import write_posekit_takes

    lift = cfg.lift
    all_parts, per_sequence = [], {}
    total_frames, total_seconds = 0, 0.0
    for seq in sequences:
        t0 = time.perf_counter()
        turn: dict[str, Any] = {}
        if detector is None:
            joints = ground_truth_joints(seq)
        else:
            degrees, scores = lift.rotate, None
            if degrees == "auto":
                degrees, scores = choose_turn(seq, detector)
            turn = {"rotate_deg": degrees}
            if scores is not None:  # what "auto" went by
                turn["rotate_auto"] = scores
            joints = predict_joints(seq, detector, lift.batch_size, progress, degrees)
        result = lift_sequence(seq, joints, lift, progress)
        seconds = time.perf_counter() - t0
        folder = staging / seq.name
        # one bar after another: a bar left open above the overlays' draws cursor moves into a
        # log, and a stop's line after them
        with _Steps(["takes"], f"write {seq.name}", progress) as steps:
            take = build_take(seq, result, lift, joints.source, turn.get("rotate_deg"))
            paths: dict[str, Path] = dict(write_take(take, folder))
            if lift.take_format != "pkmodel":
                posekit = write_posekit_takes(paths["bin"], folder, seq.name)
                if lift.take_format == "posekit":
                    for path in paths.values():
                        path.unlink()
                    paths.clear()
                paths.update(posekit)
            steps.done()
        if pictures:
            if lift.overlays:
                write_overlays(seq, result, folder / "overlays", progress)
            truth = None
            if seq.ground_truth is not None and np.isfinite(seq.ground_truth.joints_3d).any():
                truth = _canonical_truth(seq.ground_truth.joints_3d)
            plot_canonical_sheet(
                result.canonical, seq.timestamps, folder / "canonical_3d.png", lift.sheet_frames,
                truth, f"{seq.name}: canonical 3D pose (blue), ground truth (grey)",
            )  # fmt: skip
        with _Steps(["every variant"], f"metrics {seq.name}", progress) as steps:
            parts = evaluation_parts(seq, joints, result, lift)
            all_parts.append(parts)
            metrics = summarise([parts], lift)
            metrics.update(
                frames=len(seq),
                fps_measured=take.metadata["fps"],
                processing_fps=round(len(seq) / seconds, 2) if seconds > 0 else None,
                take={k: str(Path(out_dir) / seq.name / p.name) for k, p in paths.items()},
                **_radius_metrics(result),
                **_band_metrics(result, lift),
                **turn,
            )
            steps.done()
        per_sequence[seq.name] = metrics
        total_frames += len(seq)
        total_seconds += seconds
    overall = summarise(all_parts, lift)
    return {
        "pkmodel": __version__,
        "two_d": "ground-truth-2d" if detector is None else "model",
        "model": None if detector is None else detector.model_id,
        "lift": cfg.to_dict()["lift"],
        "frames": total_frames,
        "processing_fps": round(total_frames / total_seconds, 2) if total_seconds else None,
        "overall": overall,
        "sequences": per_sequence,
    }


def _publish(staged: Path, folder: Path) -> None:
    """Move one recording's new outputs from ``staged`` into ``folder``: each file renamed over
    its earlier version, each folder (overlays, posekit_take) swapped whole; the earlier takes
    this run did not write (another take format) are removed after."""
    import os

    from pkmodel.common.atomic import atomic_replace_dir, remove_path

    folder.mkdir(parents=True, exist_ok=True)
    new = {p.name for p in staged.iterdir()}
    for name in sorted(new):
        if (staged / name).is_dir():
            atomic_replace_dir(staged / name, folder / name)
        else:
            os.replace(staged / name, folder / name)
    for name in TAKE_OUTPUTS:
        if name not in new:
            remove_path(folder / name)
