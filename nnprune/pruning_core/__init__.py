"""The pruning engine: masked layers, binarizers, layer roles, schedule, regularization, presets."""

from nnprune.pruning_core.architectures import ARCHITECTURES, LinearSite, Role, find_sites
from nnprune.pruning_core.config import (BinarizerKind, BlockSpec, PruningConfig,
                                         RegularizationKind, ScoreInit, StructureKind)
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.methods import METHODS, build_config
from nnprune.pruning_core.pruner import Pruner, patch_model, unpatch_model

__all__ = [
    "ARCHITECTURES", "LinearSite", "Role", "find_sites", "BinarizerKind", "BlockSpec",
    "PruningConfig", "RegularizationKind", "ScoreInit", "StructureKind", "MaskedLinear",
    "METHODS", "build_config", "Pruner", "patch_model", "unpatch_model",
]
