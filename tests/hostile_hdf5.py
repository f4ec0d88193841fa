"""HDF5 files built to hurt a reader, shared by the bear_core and
the service tests. Each writer takes the target path and `server_file`, an HDF5 file that the
hostile one points at (external links and storage)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

ROWS = 25_000_000


def good_arrays(n: int = 20, obs_dim: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    terminals = np.zeros(n, dtype=bool)
    terminals[n // 2] = True
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 1)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": np.zeros(n, dtype=bool),
    }


def _write(path: Path, skip: tuple[str, ...] = ()) -> h5py.File:
    f = h5py.File(path, "w")
    for key, value in good_arrays().items():
        if key not in skip:
            f.create_dataset(key, data=value)
    return f


def bomb(path: Path, server_file: Path, rows: int = ROWS) -> None:
    """A few KB declaring `rows` rows in every array: chunked, gzip, no chunk written."""
    with h5py.File(path, "w") as f:
        for key, width in (("observations", 3), ("actions", 1)):
            f.create_dataset(
                key, shape=(rows, width), dtype="f4", chunks=(65536, width), compression="gzip"
            )
        for key in ("rewards", "terminals", "timeouts"):
            f.create_dataset(key, shape=(rows,), dtype="f4", chunks=(65536,), compression="gzip")


def written_bomb(path: Path, server_file: Path) -> None:
    """Chunks really written, all zeros: gzip shrinks 4,000,000 rows to a few KB each."""
    rows = 4_000_000
    zeros = np.zeros(rows, dtype=np.float32)
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals"):
            shape = (rows, 1) if key in ("observations", "actions") else (rows,)
            f.create_dataset(key, data=zeros.reshape(shape), chunks=True, compression="gzip")


def wide_rows(path: Path, server_file: Path) -> None:
    """Two rows of 10^9 elements each."""
    with _write(path, skip=("observations",)) as f:
        del f["actions"], f["rewards"], f["terminals"], f["timeouts"]
        f.create_dataset("observations", shape=(2, 10**9), dtype="f4", chunks=(1, 1 << 16))
        f.create_dataset("actions", data=np.zeros((2, 1), np.float32))
        f.create_dataset("rewards", data=np.zeros(2, np.float32))
        f.create_dataset("terminals", data=np.zeros(2, bool))


def huge_chunk(path: Path, server_file: Path) -> None:
    """Rows within limits, but one gzip chunk of 4 GB (decompressed whole on any read)."""
    with _write(path, skip=("observations",)) as f:
        f.create_dataset(
            "observations", shape=(20, 3), dtype="f4", chunks=(20, 3), compression="gzip"
        )
        del f["actions"]
        f.create_dataset(
            "actions", shape=(20, 1 << 20), dtype="f8", chunks=(20, 1 << 20), compression="gzip"
        )


def string_dtype(path: Path, server_file: Path) -> None:
    with _write(path, skip=("rewards",)) as f:
        f.create_dataset("rewards", data=np.array([b"x" * 100] * 20))


def object_dtype(path: Path, server_file: Path) -> None:
    with _write(path, skip=("rewards",)) as f:
        f.create_dataset("rewards", shape=(20,), dtype=h5py.string_dtype())


def compound_dtype(path: Path, server_file: Path) -> None:
    with _write(path, skip=("actions",)) as f:
        f.create_dataset("actions", data=np.zeros(20, dtype=[("a", "f4"), ("b", "f8")]))


def group_instead(path: Path, server_file: Path) -> None:
    with _write(path, skip=("actions",)) as f:
        f.create_group("actions")


def soft_link(path: Path, server_file: Path) -> None:
    with _write(path, skip=("actions",)) as f:
        f.create_dataset("elsewhere", data=good_arrays()["actions"])
        f["actions"] = h5py.SoftLink("/elsewhere")


def external_links(path: Path, server_file: Path) -> None:
    """All five keys are external links to another HDF5 file on the server."""
    with h5py.File(path, "w") as f:
        for key in good_arrays():
            f[key] = h5py.ExternalLink(str(server_file), f"/{key}")


def external_link_elsewhere(path: Path, server_file: Path) -> None:
    """A good file plus one external link in a group no key uses."""
    with _write(path) as f:
        f.create_group("infos")["peek"] = h5py.ExternalLink(str(server_file), "/observations")


def external_storage(path: Path, server_file: Path) -> None:
    """observations' raw data lives in a file on the server."""
    with _write(path, skip=("observations",)) as f:
        f.create_dataset(
            "observations", shape=(20, 3), dtype="f4", external=[(str(server_file), 0, 240)]
        )


def virtual(path: Path, server_file: Path) -> None:
    """observations is a virtual dataset mapping the server file's observations."""
    layout = h5py.VirtualLayout(shape=(20, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(server_file), "observations", shape=(20, 3))
    with _write(path, skip=("observations",)) as f:
        f.create_virtual_dataset("observations", layout)


def zero_rows(path: Path, server_file: Path) -> None:
    with h5py.File(path, "w") as f:
        for key, value in good_arrays().items():
            f.create_dataset(key, data=value[:0])


def no_usable_transitions(path: Path, server_file: Path) -> None:
    """Every row ends an episode by timeout, and nothing gives a successor: 0 transitions."""
    with _write(path, skip=("timeouts", "terminals")) as f:
        f.create_dataset("terminals", data=np.zeros(20, bool))
        f.create_dataset("timeouts", data=np.ones(20, bool))


def write_server_file(path: Path) -> None:
    """The 'server file' the hostile files point at: a good dataset."""
    with h5py.File(path, "w") as f:
        for key, value in good_arrays().items():
            f.create_dataset(key, data=value)


# (writer, what the refusal names)
HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "bomb": (bomb, "declares 25000000 rows"),
    "written-bomb": (written_bomb, "times its size"),
    "wide-rows": (wide_rows, "rows of 1000000000 elements"),
    "huge-chunk": (huge_chunk, "key 'actions' declares"),
    "string-dtype": (string_dtype, "key 'rewards' must be numeric"),
    "object-dtype": (object_dtype, "key 'rewards' must be numeric"),
    "compound-dtype": (compound_dtype, "key 'actions' must be numeric"),
    "group": (group_instead, "key 'actions' is not a dataset"),
    "soft-link": (soft_link, "key 'actions' is a SoftLink"),
    "external-links": (external_links, "is an external link"),
    "external-link-elsewhere": (external_link_elsewhere, "key 'infos/peek' is an external link"),
    "external-storage": (external_storage, "key 'observations' has external storage"),
    "virtual": (virtual, "key 'observations' is a virtual dataset"),
    "zero-rows": (zero_rows, "observations is empty"),
}
