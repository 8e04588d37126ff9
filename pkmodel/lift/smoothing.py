"""Timestamp-driven temporal filters for joints: EMA (the phone's default) and One-Euro, and an
offline smoother for whole takes (:func:`smooth_offline`).

Filters are streaming (one frame at a time, as on the phone) and batched over joints: a frame is
an array (..., D) (for example K x 3 joints in metres or K x 2 keypoints in pixels). Each joint
keeps its own history; a NaN sample, or a gap longer than ``max_gap_s`` since the joint was last
seen, resets that joint (the new sample passes through unfiltered). :class:`AppEmaFilter` is
the PoseKit app's own EMA, reproduced as it is (no timestamps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pkmodel.common.camera import Intrinsics, backproject, project


class JointFilter(Protocol):
    def __call__(self, timestamp: float, sample: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class _Filter:
    """Per-joint history shared by both filters: last timestamp (NaN = fresh) and estimate."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = float(max_gap_s)
        self.reset()

    def reset(self) -> None:
        self._last_t: np.ndarray | None = None
        self._x: np.ndarray | None = None

    def _start(self, sample: np.ndarray) -> None:
        self._last_t = np.full(sample.shape[:-1], np.nan)
        self._x = np.full(sample.shape, np.nan)

    def _split(
        self, timestamp: float, sample: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Which joints are missing, which (re)start, which continue, and their time steps."""
        if self._last_t is None or self._last_t.shape != sample.shape[:-1]:
            self._start(sample)
        missing = ~np.isfinite(sample).all(axis=-1)
        dt = timestamp - self._last_t  # NaN for joints without history
        with np.errstate(invalid="ignore"):
            if np.any(dt <= 0):
                raise ValueError(
                    f"timestamps must increase; got {timestamp} after an equal or later one"
                )
            fresh = ~missing & ~(dt <= self.max_gap_s)  # no history (NaN) or too long a gap
        cont = ~missing & ~fresh
        return missing, fresh, cont, dt


class EmaFilter(_Filter):
    """x_hat = alpha * x + (1 - alpha) * x_hat_prev per joint; alpha is the new sample's weight."""

    def __init__(self, alpha: float = 0.55, max_gap_s: float = 0.25) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        super().__init__(max_gap_s)

    def __call__(self, timestamp: float, sample: np.ndarray) -> np.ndarray:
        sample = np.asarray(sample, dtype=np.float64)
        missing, fresh, cont, _ = self._split(timestamp, sample)
        blended = self.alpha * sample + (1.0 - self.alpha) * self._x
        x = np.where(cont[..., None], blended, sample)
        x[missing] = np.nan
        self._x = x
        self._last_t = np.where(missing, np.nan, timestamp)
        return x.copy()


class AppEmaFilter:
    """The PoseKit app's smoother (PoseSmoother.swift): out = prev * 0.55 + new * 0.45 per joint.

    ``prev_weight`` is the weight of the PREVIOUS output (the app's alpha, 0.55). Timestamps are
    ignored (no gap reset); a joint with any NaN coordinate passes through as NaN and the next
    valid sample restarts it unfiltered.
    """

    def __init__(self, prev_weight: float = 0.55) -> None:
        self.prev_weight = float(prev_weight)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None

    def __call__(self, timestamp: float, sample: np.ndarray) -> np.ndarray:
        sample = np.asarray(sample, dtype=np.float64)
        if self._x is None or self._x.shape != sample.shape:
            self._x = np.full(sample.shape, np.nan)
        now_nan = np.isnan(sample).any(axis=-1)
        prev_nan = np.isnan(self._x).any(axis=-1)
        blended = self._x * self.prev_weight + sample * (1.0 - self.prev_weight)
        x = np.where((now_nan | prev_nan)[..., None], sample, blended)
        self._x = x
        return x.copy()


def _smoothing_factor(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
    """Low-pass weight of the new sample for a cutoff frequency (Hz) and time step (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter(_Filter):
    """The One-Euro filter (Casiez et al., CHI 2012), per coordinate, batched over joints.

    cutoff = min_cutoff + beta * |filtered speed|: slow motion is smoothed hard (less jitter),
    fast motion follows quickly (less lag). Speeds are in the sample's units per second.
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 0.05,
        d_cutoff: float = 1.0,
        max_gap_s: float = 0.25,
    ) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(
                f"One-Euro needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                f"{min_cutoff}, {d_cutoff}, {beta}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        super().__init__(max_gap_s)

    def reset(self) -> None:
        super().reset()
        self._dx: np.ndarray | None = None

    def _start(self, sample: np.ndarray) -> None:
        super()._start(sample)
        self._dx = np.zeros(sample.shape)

    def __call__(self, timestamp: float, sample: np.ndarray) -> np.ndarray:
        sample = np.asarray(sample, dtype=np.float64)
        missing, fresh, cont, dt = self._split(timestamp, sample)
        step = np.where(cont, dt, 1.0)[..., None]  # any positive number where unused
        speed = (sample - self._x) / step
        a_d = _smoothing_factor(self.d_cutoff, step)
        dx = a_d * speed + (1.0 - a_d) * self._dx
        a = _smoothing_factor(self.min_cutoff + self.beta * np.abs(dx), step)
        filtered = a * sample + (1.0 - a) * self._x
        c = cont[..., None]
        x = np.where(c, filtered, sample)
        self._dx = np.where(c, dx, 0.0)
        x[missing] = np.nan
        self._x = x
        self._last_t = np.where(missing, np.nan, timestamp)
        return x.copy()


# Offline smoothing's window for depth (sd, seconds) from a take's depth noise (sd at 1 m): the
# first value up to NOISE_FOR_MIN_SIGMA, growing with the noise, at most the second.
OFFLINE_SIGMA_S = (0.075, 0.225)
NOISE_FOR_MIN_SIGMA = 0.0025
# Its window for image positions (2D from a network; exact 2D is not smoothed), and the number of
# robust refits of the depth along the rays.
OFFLINE_SIGMA_2D_S = 0.05
OFFLINE_ROBUST_PASSES = 1
# offline smoothing fits a line instead of a quadratic where its window's weighted mean time
# lies more than this many window sds from the sample (one-sided: a take's ends, a gap's edges)
EDGE_LINE = 0.5
# Depth jumps between a joint's samples: a jump is a change of more than JUMP_M plus JUMP_NOISES
# times the take's depth noise at the joint's range; a stretch nearer than the samples on both
# sides of it (something passed in front of the joint) and a lone sample far behind both its
# neighbours (the background through a gap) weigh OCCLUDED_WEIGHT in offline smoothing.
JUMP_M = 0.10
JUMP_NOISES = 4.0
OCCLUDED_WEIGHT = 0.05
# Where a joint's depth steps from one level to another and stays (at least SPLIT_SAMPLES
# samples on each side of a jump, their medians more than JUMP_M plus SPLIT_NOISES noises apart)
# and neither side is a stretch weighed down above, nothing says which level is the joint's: the
# two are smoothed apart, so that neither drags the other's frames next to the step.
SPLIT_NOISES = 8.0
SPLIT_SAMPLES = 5
# A lone sample far behind both neighbours is the joint itself, seen for a frame between two
# hidden stretches, when beyond a nearer run of at least SPLIT_SAMPLES samples on one side of
# it the next LEVEL_SAMPLES samples are at its depth (within the jump threshold).
LEVEL_SAMPLES = 2
# On clean depth a seen joint farther than the offline fit keeps what it lies beyond
# KEEP_NOISES noises (:func:`keep_motion`).
KEEP_NOISES = 2.0
# A stretch at either end of the take nearer than the stretch next to it is weighed down too
# when the stretch beyond that one is a hidden stretch at its level (hidden, seen, hidden
# again), both at least HIDDEN_AGAIN_SAMPLES long: what hid the joint came back.
HIDDEN_AGAIN_SAMPLES = 3


def offline_sigma_for(noise_m_at_1m: float) -> float:
    """The offline smoother's depth window for a take with this depth noise: 0.075 s for clean
    depth (the synthetic exact sensor measures below 0.001), 0.225 s for a phone's LiDAR (about
    0.007), in between in proportion."""
    low, high = OFFLINE_SIGMA_S
    if not np.isfinite(noise_m_at_1m):
        return low
    return float(np.clip(low * noise_m_at_1m / NOISE_FOR_MIN_SIGMA, low, high))


def motion_share(noise_m_at_1m: float) -> float:
    """The share of a seen joint's depth residual beyond the noise that offline smoothing puts
    back (:func:`keep_motion`): all up to ``NOISE_FOR_MIN_SIGMA`` (clean depth: the take's
    noise, from second differences over time, is then mostly the motion's own), none from twice
    that (a sensor's noise), in proportion in between; none where the noise is not known (0,
    as ``SmoothingParams`` has it until the pipeline measures a take's)."""
    if not np.isfinite(noise_m_at_1m) or noise_m_at_1m <= 0:
        return 0.0
    return float(np.clip(2.0 - noise_m_at_1m / NOISE_FOR_MIN_SIGMA, 0.0, 1.0))


def keep_motion(
    raw: np.ndarray, fit: np.ndarray, noise: np.ndarray, keep: np.ndarray, share: float
) -> np.ndarray:
    """The smoothed depths ``fit`` with ``share`` of what the ``keep`` samples of ``raw`` lie
    farther than them beyond ``noise`` (an sd, per sample) put back, a one-sided soft
    threshold. On clean depth a seen joint farther than the local fit is motion the quadratic
    cannot follow (a foot that stops) or a joint pulled toward the nearer depths of the frames
    where something hid it; a sample nearer than the fit may be that hider's depth, and stays
    smoothed."""
    r = raw - fit
    beyond = np.nan_to_num(np.maximum(r - noise, 0.0))
    return np.where(keep & np.isfinite(r), fit + share * beyond, fit)


@dataclass(frozen=True)
class SmoothingParams:
    """The filter choice and its parameters (mirrors the lift config section)."""

    method: str = "one_euro"  # "none" | "ema" | "one_euro" | "posekit-app" | "offline"
    ema_alpha: float = 0.55
    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    max_gap_s: float = 0.25
    offline_sigma_s: float = 0.0  # 0: from the depth noise (pipeline), else OFFLINE_SIGMA_S[0]
    depth_noise_m: float = 0.0  # the take's depth noise (sd at 1 m): offline smoothing's jumps

    @classmethod
    def from_config(cls, lift_cfg, method: str | None = None) -> SmoothingParams:
        return cls(
            method=method or lift_cfg.smoothing,
            ema_alpha=lift_cfg.ema_alpha,
            min_cutoff=lift_cfg.one_euro_min_cutoff,
            beta=lift_cfg.one_euro_beta,
            d_cutoff=lift_cfg.one_euro_d_cutoff,
            max_gap_s=lift_cfg.max_gap_s,
            offline_sigma_s=lift_cfg.offline_sigma_s,
        )


def make_filter(params: SmoothingParams) -> JointFilter | None:
    """A fresh filter for ``params`` (None for method "none")."""
    if params.method == "none":
        return None
    if params.method == "ema":
        return EmaFilter(params.ema_alpha, params.max_gap_s)
    if params.method == "posekit-app":
        return AppEmaFilter()
    if params.method == "one_euro":
        return OneEuroFilter(params.min_cutoff, params.beta, params.d_cutoff, params.max_gap_s)
    raise ValueError(f"unknown smoothing method {params.method!r}")


def smooth_sequence(
    samples: np.ndarray, timestamps: np.ndarray, params: SmoothingParams
) -> np.ndarray:
    """Filter a whole recording (T, ..., D) with timestamps (T,) seconds, frame by frame."""
    samples = np.asarray(samples, dtype=np.float64)
    if params.method == "offline":
        sigma = params.offline_sigma_s if params.offline_sigma_s > 0 else OFFLINE_SIGMA_S[0]
        return smooth_offline(samples, timestamps, sigma, params.max_gap_s)
    filt = make_filter(params)
    if filt is None:
        return samples.copy()
    out = np.empty_like(samples)
    for i, t in enumerate(np.asarray(timestamps, dtype=np.float64)):  # recursive in time
        out[i] = filt(float(t), samples[i])
    return out


def smooth_along_rays(
    joints: np.ndarray,
    timestamps: np.ndarray,
    params: SmoothingParams,
    intrinsics: Intrinsics,
    exact_2d: bool,
    measured: np.ndarray | None = None,
) -> np.ndarray:
    """Offline smoothing of camera-frame joints (T, K, 3) as what was measured: each joint's
    depth along its ray (window ``params.offline_sigma_s``, or ``OFFLINE_SIGMA_S[0]`` when 0,
    with ``OFFLINE_ROBUST_PASSES`` robust refits; the samples :func:`depth_jumps` finds hidden
    weigh ``OCCLUDED_WEIGHT``, and its steps split the smoothing) and, unless the 2D is exact
    (ground truth), its pixel (``OFFLINE_SIGMA_2D_S``). Smoothing x, y and z together would
    move a joint off the ray of an exact 2D position, and let depth noise into the image
    position. ``measured`` (T, K) says which depths were measured (the others the skeleton
    placed; None: all measured). With exact 2D on clean depth, a measured sample at full weight
    keeps what it lies farther than the fit beyond ``KEEP_NOISES`` noises (:func:`keep_motion`,
    :func:`motion_share`); with a network's 2D such a sample is as often the 2D on another
    surface for a frame, and stays smoothed."""
    sigma = params.offline_sigma_s if params.offline_sigma_s > 0 else OFFLINE_SIGMA_S[0]
    t = np.asarray(timestamps, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    z = joints[..., 2]
    noise = params.depth_noise_m * np.nan_to_num(z) ** 2
    own = np.ones(z.shape, bool) if measured is None else np.asarray(measured, dtype=bool)
    jumps = depth_jumps(z, t, noise, params.max_gap_s, own)
    depth = smooth_offline(
        z[..., None],
        t,
        sigma,
        params.max_gap_s,
        jumps.weights,
        robust_passes=OFFLINE_ROBUST_PASSES,
        breaks=jumps.breaks,
    )[..., 0]
    share = motion_share(params.depth_noise_m)
    if exact_2d and share > 0:
        keep = own & (jumps.weights == 1)
        depth = keep_motion(z, depth, KEEP_NOISES * noise, keep, share)
    pixels = project(joints, intrinsics)
    if not exact_2d:
        pixels = smooth_offline(pixels, t, OFFLINE_SIGMA_2D_S, params.max_gap_s)
    return backproject(pixels, depth, intrinsics)


@dataclass(frozen=True)
class DepthJumps:
    """What :func:`depth_jumps` found in depths (T, N): each sample's weight in offline
    smoothing, and the samples that start a new piece (smoothed apart from those before)."""

    weights: np.ndarray  # (T, N) OCCLUDED_WEIGHT or 1
    breaks: np.ndarray  # (T, N) bool: a step between this sample and the joint's previous one


def depth_jumps(
    depth: np.ndarray,
    timestamps: np.ndarray,
    noise: np.ndarray | float,
    max_gap_s: float,
    measured: np.ndarray | None = None,
) -> DepthJumps:
    """Jumps in each joint's depth over time (T, N) (NaN = none), for offline smoothing.

    Between two samples of a joint that differ by more than ``JUMP_M`` plus ``JUMP_NOISES``
    times ``noise`` (the depth's sd in metres; scalar or (T, N), at the later sample) the depth
    jumps. First, a lone sample behind both its neighbours by more than that is an outlier (the
    background seen through a gap), unless it is at the depth of the samples just beyond a run
    of at least ``SPLIT_SAMPLES`` nearer ones on one side of it (:func:`_seen_between`: the
    joint seen for one frame between two hidden stretches). Then the samples between two jumps
    form a stretch; a stretch nearer than the samples on both sides of it is the depth of
    something that passed in front of the joint (a hidden joint takes the depth of what hides
    it), and the smoother should follow the joint's depth around it instead of blending the two:
    these samples weigh ``OCCLUDED_WEIGHT``. A stretch at either end of the take, or next to a
    gap longer than ``max_gap_s``, has one side only: nothing says which side is right, unless
    the depth went nearer, farther, and back to the same nearer level for the rest (a hidden
    stretch, a seen one, and the end stretch at the hidden one's level, measured, at least as
    long as it and well nearer than the seen one, see :func:`_hidden_again`; or the mirror at
    the start): what hid the joint came back, and that end stretch weighs ``OCCLUDED_WEIGHT``
    too.

    Any other jump between two ``measured`` samples (T, N; None: all) after which the depth
    stays at another level (the stretches on both sides hold at least ``SPLIT_SAMPLES``
    samples, and the medians of the ``SPLIT_SAMPLES`` nearest the jump on each side differ by
    more than ``JUMP_M`` plus ``SPLIT_NOISES`` noises) is a break: the two sides are smoothed
    apart, so that the frames on each side keep their own depth (a joint that went behind
    something for the rest of the take, or came out from behind it at the start). A joint the
    skeleton placed is left to the robust fit: a placed stretch is often the odd one out.
    """
    z = np.asarray(depth, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    noise = np.broadcast_to(np.asarray(noise, dtype=np.float64), z.shape)
    own = np.ones(z.shape, bool) if measured is None else np.asarray(measured, dtype=bool)
    known = np.isfinite(z)
    segment = _segments(known, t, max_gap_s)  # the smoother's own pieces: no gap inside one
    weights = np.ones(z.shape)
    breaks = np.zeros(z.shape, dtype=bool)
    for n in range(z.shape[1]):
        idx = np.flatnonzero(known[:, n])
        # segment numbers only grow with time: each segment is one run of idx (a mask per
        # segment was quadratic in a take whose joint keeps dropping out)
        for piece in np.split(idx, np.flatnonzero(np.diff(segment[idx, n])) + 1):
            if piece.size == 0:
                continue
            low, step = _jumps(z[piece, n], noise[piece, n], own[piece, n])
            weights[piece[low], n] = OCCLUDED_WEIGHT
            breaks[piece[step], n] = True
    return DepthJumps(weights, breaks)


def _jumps(z: np.ndarray, noise: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of one joint's consecutive samples ``z`` (no gap): the lone samples far behind both
    neighbours and the stretches nearer than both sides, and the breaks (:func:`depth_jumps`)."""
    out = np.zeros(z.shape, dtype=bool)
    step = np.zeros(z.shape, dtype=bool)
    if z.size < 3:
        return out, step
    threshold = JUMP_M + JUMP_NOISES * noise
    mid = np.arange(1, z.size - 1)
    out[mid] = (z[mid] > z[mid - 1] + threshold[mid]) & (z[mid] > z[mid + 1] + threshold[mid])
    for i in np.flatnonzero(out):
        out[i] = not _seen_between(z, threshold, i)
    keep = np.flatnonzero(~out)
    v, th = z[keep], threshold[keep]
    starts = np.concatenate([[0], np.flatnonzero(np.abs(np.diff(v)) > th[1:]) + 1, [v.size]])
    hidden = []
    for b in range(1, len(starts) - 2):  # interior stretches only: both sides are known
        first, last = starts[b], starts[b + 1] - 1
        if v[first] < v[first - 1] - th[first] and v[last] < v[last + 1] - th[last]:
            out[keep[first : last + 1]] = True
            hidden.append(b)
    split = JUMP_M + SPLIT_NOISES * noise[keep]
    for b in _hidden_again(v, th, split, measured[keep], starts, hidden):
        out[keep[starts[b] : starts[b + 1]]] = True
    for b in range(1, len(starts) - 1):  # starts[b]: the first sample after a jump
        i = starts[b]
        before, after = keep[i - 1], keep[i]
        if out[before] or out[after] or not (measured[before] and measured[after]):
            continue
        if min(i - starts[b - 1], starts[b + 1] - i) < SPLIT_SAMPLES:
            continue  # a short excursion is left to the weights and the robust fit
        level = np.median(v[i : i + SPLIT_SAMPLES]) - np.median(v[i - SPLIT_SAMPLES : i])
        if abs(level) > split[i]:
            step[after] = True
    return out, step


def _seen_between(z: np.ndarray, threshold: np.ndarray, i: int) -> bool:
    """Whether sample ``i`` of ``z``, far behind both neighbours, is the joint seen for a frame
    between two hidden stretches: on one side of it, beyond a run of at least ``SPLIT_SAMPLES``
    nearer samples, the next ``LEVEL_SAMPLES`` are at its depth (within ``threshold``). The
    background through a gap is far behind the joint's own depth as well."""
    for d in (-1, 1):
        j = i + d
        while 0 <= j < z.size and z[j] < z[i] - threshold[i]:
            j += d
        level = j + d * np.arange(LEVEL_SAMPLES)
        if abs(j - i) - 1 < SPLIT_SAMPLES or level.min() < 0 or level.max() >= z.size:
            continue
        if np.all(np.abs(z[level] - z[i]) <= threshold[i]):
            return True
    return False


def _hidden_again(
    v: np.ndarray,
    th: np.ndarray,
    split: np.ndarray,
    measured: np.ndarray,
    starts: np.ndarray,
    hidden: list[int],
) -> list[int]:
    """The end stretches of one joint's samples ``v`` (stretches from ``starts``, jump
    thresholds ``th``, break margins ``split``) that are hidden again: the stretch next to
    one is seen (farther), the one beyond that was found ``hidden``, and the end stretch is at
    that hidden stretch's level (medians of the ``SPLIT_SAMPLES`` samples nearest each other
    within ``th``), well nearer than the seen one (``split``), at least as long as the hidden
    one and at least ``HIDDEN_AGAIN_SAMPLES`` long, and all of them ``measured``: what hid the
    joint came back and stayed to the end (or the mirror at the start)."""
    n, k = len(starts) - 1, SPLIT_SAMPLES

    def part(i: int, head: bool) -> np.ndarray:  # stretch i's first or last k samples
        idx = np.arange(starts[i], starts[i + 1])
        return idx[:k] if head else idx[-k:]

    found = []
    for end, seen, hid in ((0, 1, 2), (n - 1, n - 2, n - 3)):
        if hid not in hidden:  # hidden stretches are interior: end, seen, hid are distinct
            continue
        length = starts[end + 1] - starts[end]
        if min(length, starts[hid + 1] - starts[hid]) < HIDDEN_AGAIN_SAMPLES:
            continue
        if starts[hid + 1] - starts[hid] > length:
            continue  # a long "hidden" stretch between two far ones may be the joint itself
        # each stretch's samples on the side of the pattern's middle
        near = [part(end, end != 0), part(seen, end == 0), part(hid, end == 0)]
        if not all(measured[i].all() for i in near):
            continue
        own, far, before = (float(np.median(v[i])) for i in near)
        edge = near[0][-1] if end == 0 else near[0][0]
        if own < far - split[edge] and abs(own - before) <= th[edge]:
            found.append(end)
    return found


def _segments(known: np.ndarray, t: np.ndarray, max_gap_s: float) -> np.ndarray:
    """(T, N) segment number of every sample: a new segment starts after a stretch without the
    joint longer than ``max_gap_s`` (the samples on both sides are not smoothed together)."""
    T = len(t)
    seg = np.zeros(known.shape, dtype=np.int64)
    last = np.full(known.shape[1:], np.nan)
    count = np.zeros(known.shape[1:], dtype=np.int64)
    for i in range(T):
        with np.errstate(invalid="ignore"):
            new = known[i] & ~(t[i] - last <= max_gap_s)
        count += new
        seg[i] = count
        last = np.where(known[i], t[i], last)
    return seg


def _accumulate(sums: tuple, i: slice, j: slice, dt: np.ndarray) -> None:
    """Add samples ``j`` (at time offsets ``dt``) to the local fits of samples ``i``: the
    weighted moments sum(w dt^p), p = 0..4, and sums w dt^p x, p = 0..2."""
    moments, rhs, w_all, seg, values, sigma_s = sums
    kernel = np.exp(-0.5 * (dt / sigma_s) ** 2) * (np.abs(dt) <= 3.0 * sigma_s)
    w = kernel[:, None] * w_all[j] * (seg[i] == seg[j])
    powers = dt[:, None, None] ** np.arange(5)  # (n, 1, 5)
    moments[i] += w[..., None] * powers
    rhs[i] += (w[..., None] * powers[..., :3])[..., None] * values[j][:, :, None, :]


def smooth_offline(
    samples: np.ndarray,
    timestamps: np.ndarray,
    sigma_s: float,
    max_gap_s: float,
    weights: np.ndarray | None = None,
    robust_passes: int = 2,
    breaks: np.ndarray | None = None,
) -> np.ndarray:
    """Zero-lag smoothing of a whole take (T, ..., D) at once: at every sample, a local
    quadratic fitted over time with Gaussian weights (sd ``sigma_s`` seconds, cut at 3 sd),
    from past and future samples alike, so a movement is not delayed. Where the weights lie
    mostly on one side (their mean time more than ``EDGE_LINE`` sds away: a take's ends, a
    gap's edges), a local line: a quadratic extrapolates the noise there.

    Gaps respected: samples separated by a stretch without the joint longer than ``max_gap_s``
    are not fitted together, and a missing sample (NaN) stays missing. ``weights`` (T, ...) scale
    each sample's say (e.g. less for inferred joints). ``breaks`` (T, ...) mark samples that
    start a new piece: they and the samples after them are not fitted with those before.
    ``robust_passes`` refits with bisquare weights on the residuals (scale: 6 median residuals,
    or 3 mean ones when more than half fit exactly), so that a lone jump (a joint's depth
    briefly taken from what hid it) does not drag its neighbours.
    """
    x = np.asarray(samples, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    T = x.shape[0]
    shape = x.shape
    flat = x.reshape(T, -1, shape[-1])  # (T, N, D)
    known = np.isfinite(flat).all(axis=-1)
    base_w = np.ones(known.shape) if weights is None else np.asarray(weights, np.float64)
    base_w = np.where(known, base_w.reshape(T, -1), 0.0)
    seg = _segments(known, t, max_gap_s)
    if breaks is not None:
        seg = seg + np.cumsum(np.asarray(breaks, dtype=np.int64).reshape(T, -1), axis=0)
    values = np.where(known[..., None], flat, 0.0)
    reach = 3.0 * sigma_s
    offsets = []  # frame offsets whose time difference can fall inside the kernel
    for o in range(1, T):
        if np.all(np.abs(t[o:] - t[:-o]) > reach):
            break
        offsets.append(o)
    robust = np.ones(known.shape)
    out = flat.copy()
    for _ in range(robust_passes + 1):
        w_all = base_w * robust
        moments = np.zeros((T, flat.shape[1], 5))
        rhs = np.zeros((T, flat.shape[1], 3, shape[-1]))

        sums = (moments, rhs, w_all, seg, values, sigma_s)
        _accumulate(sums, slice(None), slice(None), np.zeros(T))
        for o in offsets:
            _accumulate(sums, slice(0, T - o), slice(o, T), t[o:] - t[:-o])
            _accumulate(sums, slice(o, T), slice(0, T - o), t[:-o] - t[o:])
        a = np.stack([moments[..., k : k + 3] for k in range(3)], axis=-2)  # (T, N, 3, 3)
        # a quadratic needs three samples in reach; with fewer the sample itself (or a line,
        # below, where the window is one-sided)
        enough = (moments[..., 0] > 0) & known
        det = np.linalg.det(a)
        good = enough & (
            np.abs(det) > 1e-12 * np.maximum(moments[..., 0], 1e-300) ** 3 * sigma_s**6
        )
        fit = np.where(
            good[..., None],
            np.linalg.solve(np.where(good[..., None, None], a, np.eye(3)), rhs)[..., 0, :],
            flat,
        )
        # where the window's weight lies mostly on one side (a take's ends, a gap's edges), a
        # quadratic extrapolates its noise: a local line there
        a2 = np.stack([moments[..., k : k + 2] for k in range(2)], axis=-2)
        line = enough & (
            np.abs(np.linalg.det(a2))
            > 1e-12 * np.maximum(moments[..., 0], 1e-300) ** 2 * sigma_s**2
        )
        side = np.abs(moments[..., 1]) > EDGE_LINE * sigma_s * moments[..., 0]
        use = line & side
        if use.any():
            lin = np.linalg.solve(np.where(use[..., None, None], a2, np.eye(2)), rhs[..., :2, :])
            fit = np.where(use[..., None], lin[..., 0, :], fit)
        out = np.where(known[..., None], fit, np.nan)
        resid = np.linalg.norm(np.where(known[..., None], flat - out, 0.0), axis=-1)
        # 6 median residuals (half the mean when most fit exactly, as a clean take's do)
        r = resid[known]
        scale = 6.0 * max(float(np.median(r)), 0.5 * float(np.mean(r))) if r.size else 0.0
        if scale <= 0:
            break
        robust = np.clip(1.0 - (resid / scale) ** 2, 0.0, 1.0) ** 2
    return out.reshape(shape)
