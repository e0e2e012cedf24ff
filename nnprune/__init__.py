"""nnprune: prune transformers while fine-tuning, into models that are physically smaller."""

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that ``import nnprune`` stays light (no torch / transformers).
_LAZY = {"load_pretrained": ("nnprune.pruning_core.checkpoint", "load_pretrained")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", "load_pretrained"]
