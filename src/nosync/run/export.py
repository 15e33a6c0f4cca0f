"""``final.safetensors``: the selected model's weights in a format any framework can read.

Beside ``final.pt``; the run's configuration rides in the file's metadata as a JSON string
(``safetensors`` metadata is string to string), so the weights still say how they were made.
"""

from __future__ import annotations

import json
import os
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from nosync.files import atomic_write_bytes


def save_safetensors(
    state_dict: dict[str, Tensor], config: dict[str, Any], path: str | os.PathLike[str]
) -> None:
    """Write ``state_dict`` atomically, as contiguous CPU copies (safetensors refuses tensors
    that share storage, such as tied weights: each is stored on its own)."""
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in state_dict.items()}
    data = save(tensors, metadata={"config": json.dumps(config), "format": "pt"})
    atomic_write_bytes(path, data)


def load_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, config)`` of a ``final.safetensors``."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return load_file(str(path)), json.loads(metadata.get("config", "{}"))
