"""Loading nerfstudio checkpoints under torch >= 2.6.

torch >= 2.6 loads checkpoints with ``weights_only=True``. nerfstudio's learning-rate schedulers put numpy
float64 values into the optimizer/scheduler state, so every released nerfstudio checkpoint fails to load
(``Unsupported global: numpy.core.multiarray.scalar``; nerfstudio issue #3683). Turning ``weights_only`` off
would let a checkpoint run arbitrary code. Instead we allow-list the plain numpy data types that appear in
those files, which keeps the safe loader. This runs when one of our commands, trainers, pipelines or data parsers
starts (:func:`mald_nerfstudio.errors.install_run_hooks`), before any of our checkpoints is loaded.
"""

from __future__ import annotations


def allow_numpy_scalars_in_checkpoints() -> None:
    """Allow-list numpy scalars and dtypes for ``torch.load(weights_only=True)``; no-op on older torch."""
    import numpy as np
    import torch

    add = getattr(getattr(torch, "serialization", None), "add_safe_globals", None)
    if add is None:
        return
    try:
        scalar = np._core.multiarray.scalar  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        scalar = np.core.multiarray.scalar  # type: ignore[attr-defined]
    dtype_types = {type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")}
    safe = [scalar, np.dtype, *dtype_types]
    # Checkpoints written with numpy 1.x name the function ``numpy.core.multiarray.scalar``.
    safe.append((scalar, "numpy.core.multiarray.scalar"))
    add(safe)
