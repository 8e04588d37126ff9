"""Loading samples in batches: one DataLoader for a whole run whose order and augmentation are a
function of (seed, epoch) only, with DataLoader workers that start once.

``EpochKeySampler`` yields (epoch, index) keys that ``PoseDataset`` understands, so one loader
with persistent workers serves every epoch exactly as a fresh loader per epoch would.
``PoseDataLoader`` is the DataLoader they build: a PkmodelError or OSError raised in a worker
process (a missing crop, too many open files) reaches the user as its one sentence, not as
torch's worker traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from pkmodel.common.errors import PkmodelError


def shuffle_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle (one generator per epoch, never the run's history)."""
    return seed * 1_000_003 + epoch


E = TypeVar("E", PkmodelError, OSError)


def worker_error(e: E) -> E:
    """The error a DataLoader worker raised, as that worker raised it.

    torch re-raises a worker's exception as ``type(e)(text)`` where the text is "Caught
    PkmodelError in DataLoader worker process N." and the worker's whole traceback, whose last
    line is ``pkmodel.common.errors.PkmodelError: <the sentence>`` (``OSError: [Errno 24] Too
    many open files`` for a built-in error); that sentence is kept. ``e`` itself when it did not
    come from a worker.
    """
    text = str(e)
    kind = type(e)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"  # fmt: skip
    marker = f"\n{name}: "
    if not text.startswith(f"Caught {kind.__name__} ") or marker not in text:
        return e
    return kind(text.rpartition(marker)[2].strip())


class PoseDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose workers' PkmodelErrors and OSErrors are their one sentence
    (``worker_error``)."""

    def __iter__(self) -> Iterator[Any]:
        try:
            with _opencv_threads_paused(self.num_workers > 0):
                batches = super().__iter__()  # forks the workers (the first time, if persistent)
            yield from batches
        except (PkmodelError, OSError) as e:
            raise worker_error(e) from None


@contextmanager
def _opencv_threads_paused(forking: bool) -> Iterator[None]:
    """OpenCV at one thread while DataLoader workers are forked, then as before.

    OpenCV's thread pool (pthreads) is copied into a forked worker without its threads, and
    the worker's ``cv2.setNumThreads(1)`` (PoseDataset's, so that N workers use N cores) then
    waits forever for them: a process that had run OpenCV on several threads before its
    workers started hung (``export-coreml --check-ap`` after the export's check pictures).
    At one thread the parent has no pool threads to copy."""
    if not forking:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class EpochKeySampler(torch.utils.data.Sampler):
    """(epoch, index) keys in the order of epoch ``set_epoch`` set: shuffled by a generator
    seeded with ``shuffle_seed(seed, epoch)``, or this rank's shuffled share under DDP (a
    DistributedSampler, dropping the tail so every rank has as many).

    The epoch travels with every index, so one DataLoader with persistent workers serves every
    epoch (workers start once per run, not once per epoch) and each sample's augmentation is
    still a function of (seed, epoch, index) alone, whichever worker loads it.
    """

    def __init__(self, dataset: Any, seed: int, distributed: bool):
        from torch.utils.data import DistributedSampler, RandomSampler

        self.seed, self.epoch = seed, 0
        self.inner: DistributedSampler | RandomSampler
        if distributed:
            self.inner = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
        else:
            self.inner = RandomSampler(dataset, generator=torch.Generator())
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if isinstance(self.inner, torch.utils.data.DistributedSampler):
            self.inner.set_epoch(self.epoch)
        else:
            self.inner.generator.manual_seed(shuffle_seed(self.seed, self.epoch))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, int(i)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class TrainLoader:
    """One DataLoader for a whole training run: ``epoch(e)`` gives epoch e's batches.

    Order and augmentation are a function of (seed, epoch) only, as with a new loader per
    epoch, but worker processes (``workers`` > 0) start once and persist across epochs:
    re-creating them cost about a second per epoch here (imports in every new worker) and
    more where workers are spawned (macOS) or many (GPU machines).
    """

    def __init__(self, dataset: Any, batch_size: int, workers: int, pin_memory: bool,
                 distributed: bool, seed: int) -> None:  # fmt: skip
        self.sampler = EpochKeySampler(dataset, seed, distributed)
        self.loader = PoseDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin_memory,
            drop_last=True,
            persistent_workers=workers > 0,
        )

    def epoch(self, epoch: int) -> PoseDataLoader:
        self.sampler.set_epoch(epoch)
        return self.loader


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int = 2,
    pin_memory: bool = False,
    distributed: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool | None = None,
) -> PoseDataLoader:
    """A DataLoader over a PoseDataset (default collation: every field is a fixed-size tensor).

    ``distributed``: a DistributedSampler over the initialised process group (this rank's
    share). Pass ``pin_memory=True`` when the batches go to a CUDA device.
    """
    from torch.utils.data import DistributedSampler

    drop_last = shuffle if drop_last is None else drop_last
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
    return PoseDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(shuffle_seed(seed, epoch)),
        persistent_workers=False,
    )
