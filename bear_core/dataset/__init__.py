"""Datasets: episodes, flat D4RL-style MDPDataset, HDF5 I/O, sampling buffer. Torch-free."""

from bear_core.dataset.batch import TransitionBatch
from bear_core.dataset.buffer import TransitionBuffer
from bear_core.dataset.episodes import Episode, MDPDataset, Transition
from bear_core.dataset.hdf5 import read_hdf5, write_hdf5
from bear_core.dataset.hdf5_inspect import (
    Hdf5Layout,
    Hdf5Limits,
    Hdf5Summary,
    inspect_hdf5,
    summarize_hdf5,
)
from bear_core.dataset.pendulum import generate_pendulum_dataset
from bear_core.dataset.reacher import generate_reacher_dataset

__all__ = [
    "Episode",
    "Hdf5Layout",
    "Hdf5Limits",
    "Hdf5Summary",
    "MDPDataset",
    "Transition",
    "TransitionBatch",
    "TransitionBuffer",
    "generate_pendulum_dataset",
    "generate_reacher_dataset",
    "inspect_hdf5",
    "read_hdf5",
    "summarize_hdf5",
    "write_hdf5",
]
