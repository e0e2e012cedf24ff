"""What nnprune knows about a model from its config alone: the architectures it prunes (its
architecture registry, :func:`supported_architectures`) and how many tokens a model can take
(:func:`max_positions`), so that a command refuses what cannot run before anything heavy starts.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from nnprune.errors import NNPruneError
from nnprune.pruning_core.architectures import ARCHITECTURES

# Position ids start after the padding index (RoBERTa's create_position_ids_from_input_ids): of
# ``max_position_embeddings`` rows, ``pad_token_id + 1`` are never a token's (514 -> 512 tokens).
_PADDING_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                                       "mpnet", "longformer", "data2vec-text"})
# Relative positions (a bucketed bias): no table limits the length.
_RELATIVE_POSITIONS = frozenset({"t5", "mt5", "umt5", "longt5"})


def supported_architectures(*, encoder_only: bool = False) -> list[str]:
    """The ``config.model_type`` values nnprune prunes, sorted: the architecture registry (layer
    roles as data, ``docs/adding-an-architecture.md``), never a list kept by hand.

    Args:
        encoder_only: only those without a decoder (what post-training pruning, ``nnprune.prune``
            and ``nnprune prune``, takes).

    Example::

        print(", ".join(nnprune.supported_architectures()))   # bart, bert, deberta-v2, ...
    """
    return sorted(name for name, arch in ARCHITECTURES.items()
                  if not (encoder_only and any(s.is_decoder for s in arch.stacks)))


def max_positions(config: "Mapping[str, Any] | Any") -> Optional[int]:
    """The most tokens one sequence of a model with ``config`` (a ``PretrainedConfig`` or the
    dict of a ``config.json``) can hold: its position table's size (less RoBERTa's padding
    offset: 512 for 514 rows), or ``None`` when no table limits it (T5's relative positions,
    DeBERTa-v2/v3 without absolute positions, a config that names none).

    Example::

        nnprune.max_positions(nnprune.load_config("runs/sst2-dense"))   # 512
    """
    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    model_type = str(get("model_type") or "")
    if model_type in _RELATIVE_POSITIONS:
        return None
    if model_type == "deberta-v2" and not get("position_biased_input"):
        return None
    size = get("max_position_embeddings")
    if size is None:
        size = get("n_positions")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None
    if model_type in _PADDING_OFFSET_POSITIONS:
        pad = get("pad_token_id")
        size -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return size


def check_positions(config: "Mapping[str, Any] | Any", lengths: Iterable[Optional[int]], *,
                    option: str = "seq_len", where: str = "the model") -> None:
    """Refuse (a one-line :class:`~nnprune.NNPruneError`) sequence lengths past
    :func:`max_positions` of ``config``: a forward that long fails deep in the embeddings
    ("The expanded size of the tensor (1000) must match ... (512)"). ``option``: how the caller
    names the lengths (``--seq-lens``); ``where``: the model's folder or name.

    Example::

        nnprune.check_positions(nnprune.load_config("runs/sst2-dense"), [128, 1000],
                                option="--seq-lens", where="runs/sst2-dense")  # NNPruneError
    """
    most = max_positions(config)
    if most is None:
        return
    over = sorted({int(n) for n in lengths if n is not None and n > most})
    if over:
        model_type = (config.get("model_type") if isinstance(config, Mapping)
                      else getattr(config, "model_type", None))
        raise NNPruneError(f"{option} {', '.join(map(str, over))}: {where} takes at most {most} "
                           f"tokens per sequence (the positions of its {model_type} config)")


__all__ = ["check_positions", "max_positions", "supported_architectures"]
