"""A training run's folder: metrics.jsonl, the curves PNG and (when installed) TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pkmodel.common.atomic import atomic_open, atomic_write_text


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same row, NaN included (as JSON writes it)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class RunLog:
    """metrics.jsonl (one JSON object per epoch), a PNG of the curves, optional TensorBoard."""

    def __init__(
        self, out_dir: Path, resume_epoch: int | None, committed: dict[str, Any] | None = None
    ) -> None:
        """``resume_epoch``: the epoch the resumed last.pt ended (None: a new run, whose rows
        replace the file's with the first one). The file's rows up to it are kept; later ones
        come from an epoch that was not committed (a stop before its last.pt) and are redone.
        ``committed`` is last.pt's own row of ``resume_epoch``: it replaces a row the file
        lacks; the file is another run's (a run that started over stopped after its first
        last.pt, before its metrics) when its row of that epoch differs, and only
        ``committed`` is kept then."""
        self.path = out_dir / "metrics.jsonl"
        self.rows: list[dict[str, Any]] = []
        if resume_epoch is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                row = json.loads(line)
                if row.get("epoch", 0) <= resume_epoch:
                    self.rows.append(row)
        if resume_epoch is not None and committed is not None:
            mine = [r for r in self.rows if r.get("epoch") == resume_epoch]
            if mine and not all(_same(r, committed) for r in mine):
                self.rows = []
            self.rows = [r for r in self.rows if r.get("epoch", 0) < resume_epoch]
            self.rows.append(dict(committed))
        # Written with the first epoch's row, before its checkpoint; until then the folder
        # holds what it held (a run that stops before its first epoch leaves the earlier
        # metrics). TensorBoard's events likewise: see _tensorboard.
        self.tb_dir = out_dir / "tensorboard"
        self.tb: Any = None

    def _write(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def _tensorboard(self, epoch: int) -> Any:
        """The TensorBoard writer (None without the tensorboard package), opened with the
        first row it gets, ``epoch``: its file starts with a restart marker at that epoch
        (``purge_step``), which hides the folder's earlier events from there on. So a resumed
        run's redone epochs replace those of the run it continues (an epoch that was not
        committed, or was committed and redone), and a run that starts over (--force) replaces
        the earlier run's curves, once it has a row of its own."""
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: metrics.jsonl and the PNG remain
                return None
            self.tb = SummaryWriter(str(self.tb_dir), purge_step=epoch)
        return self.tb

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()
        if self._tensorboard(row["epoch"]) is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def plot(self, out: Path) -> None:
        """Loss and AP against epochs, written atomically as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.rows]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(epochs, [r["train/loss"] for r in self.rows], label="train loss")
        val = [(r["epoch"], r["val/loss"]) for r in self.rows if "val/loss" in r]
        if val:
            ax1.plot(*zip(*val, strict=True), "o-", label="val loss")
        ax1.set_xlabel("epoch")
        ax1.set_yscale("log")
        ax1.legend()
        ap = [(r["epoch"], r["val/AP"]) for r in self.rows if "val/AP" in r]
        if ap:
            ax2.plot(*zip(*ap, strict=True), "o-", color="tab:green", label="val OKS AP")
        ax2.set_xlabel("epoch")
        ax2.set_ylim(0, 1)
        ax2.legend()
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_open(out, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
