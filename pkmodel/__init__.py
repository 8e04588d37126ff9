"""pkmodel: PoseKit's model toolkit (data, training, evaluation, export, 3D lifting)."""

import os

# OpenMP threads that spin while waiting make PyTorch 10-30x slower on a CPU shared with
# DataLoader workers or other jobs (measured on 2 cores: 1.6 vs 31 images/s in training).
# Sleeping waits cost little when the CPU is free. Set before torch loads its OpenMP runtime;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
