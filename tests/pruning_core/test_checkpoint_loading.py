"""load_model accepts what stock ``from_pretrained`` loads: legacy buffers (position_ids saved by
transformers < 4.31), gamma/beta LayerNorm names, a base-model prefix present or not, sharded
safetensors; and still refuses pickled-only folders and genuine mismatches in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nnprune.errors import NNPruneError
from nnprune.pruning_core.checkpoint import CheckpointMismatchError, load_model
from conftest import save_tiny_model, tiny_config

IDS = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2307, 3185, 102, 0, 0]])
MASK = (IDS != 0).long()


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _rewrite(folder: Path, state: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})


def _stock(folder: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()


@torch.no_grad()
def _logits(model) -> torch.Tensor:
    return model(input_ids=IDS, attention_mask=MASK).logits


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "tiny-bert", "bert")


def test_legacy_position_ids_buffer_loads_like_from_pretrained(tiny):
    state = _state(tiny)
    assert not any("position_ids" in k for k in state)
    state["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    _rewrite(tiny, state)
    ours = load_model(tiny).model
    assert torch.equal(ours.bert.embeddings.position_ids, torch.arange(512).unsqueeze(0))
    torch.testing.assert_close(_logits(ours), _logits(_stock(tiny)), rtol=0, atol=0)


def test_gamma_beta_layernorm_names_load(tiny):
    ref = _logits(load_model(tiny).model)
    state = _state(tiny)
    renamed = {}
    for k, v in state.items():
        if "LayerNorm.weight" in k:
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma")
        elif "LayerNorm.bias" in k:
            k = k.replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[k] = v
    assert any(k.endswith("LayerNorm.gamma") for k in renamed)
    _rewrite(tiny, renamed)
    torch.testing.assert_close(_logits(load_model(tiny).model), ref, rtol=0, atol=0)


@torch.no_grad()
def test_bare_model_checkpoint_loads(tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    bare = BertModel(tiny_config("bert")).eval()
    folder = tmp_path / "bare"
    bare.save_pretrained(folder)
    state = _state(folder)
    assert any(k.startswith("embeddings.") for k in state)
    state["embeddings.position_ids"] = torch.arange(512).unsqueeze(0)  # as old transformers did
    _rewrite(folder, state)
    loaded = load_model(folder).model
    assert type(loaded) is BertModel
    torch.testing.assert_close(loaded(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                               bare(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                               rtol=0, atol=0)


@torch.no_grad()
def test_base_model_prefix_present_or_not(tiny, tmp_path):
    """A head-class checkpoint read as the bare model (prefix stripped, head dropped), and a
    bare-model checkpoint whose config names the bare class but keys carry ``bert.``."""
    from transformers import BertModel

    head = load_model(tiny).model
    bare_dir = tmp_path / "bare-from-head"
    shutil.copytree(tiny, bare_dir)
    cfg = json.loads((bare_dir / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (bare_dir / "config.json").write_text(json.dumps(cfg))
    loaded = load_model(bare_dir).model
    assert type(loaded) is BertModel
    torch.testing.assert_close(loaded(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                               head.bert(input_ids=IDS, attention_mask=MASK).last_hidden_state,
                               rtol=0, atol=0)


def test_sharded_checkpoint_loads(tiny):
    ref = _logits(load_model(tiny).model)
    state = _state(tiny)
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half],
              "model-00002-of-00002.safetensors": keys[half:]}
    weight_map = {}
    for name, ks in shards.items():
        save_file({k: state[k].contiguous() for k in ks}, str(tiny / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in ks})
    (tiny / "model.safetensors").unlink()
    (tiny / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    torch.testing.assert_close(_logits(load_model(tiny).model), ref, rtol=0, atol=0)
    torch.testing.assert_close(_logits(_stock(tiny)), ref, rtol=0, atol=0)


def test_pickled_only_folder_is_refused_with_conversion_hint(tiny):
    state = _state(tiny)
    (tiny / "model.safetensors").unlink()
    torch.save(state, tiny / "pytorch_model.bin")
    with pytest.raises(NNPruneError) as exc:
        load_model(tiny)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "pytorch_model.bin" in msg
    assert "from transformers import BertForSequenceClassification" in msg
    assert "save_pretrained(" in msg and "safe_serialization=True" in msg


def test_genuinely_missing_weight_still_fails(tiny):
    state = _state(tiny)
    del state["bert.encoder.layer.1.attention.self.query.weight"]
    _rewrite(tiny, state)
    with pytest.raises(NNPruneError) as exc:
        load_model(tiny)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "missing bert.encoder.layer.1.attention.self.query.weight" in msg


def test_missing_head_of_bare_checkpoint_still_fails(tmp_path):
    """Bare-model weights under a head class: the prefix is added, the head stays missing."""
    from transformers import BertModel

    torch.manual_seed(0)
    folder = tmp_path / "bare"
    BertModel(tiny_config("bert")).save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["BertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NNPruneError, match=r"missing classifier\.weight"):
        load_model(folder)


def test_unexpected_weight_and_wrong_shape_still_fail(tiny):
    state = _state(tiny)
    state["bert.encoder.layer.0.extra.weight"] = torch.zeros(3)
    _rewrite(tiny, state)
    with pytest.raises(NNPruneError, match="unexpected bert.encoder.layer.0.extra.weight"):
        load_model(tiny)
    del state["bert.encoder.layer.0.extra.weight"]
    state["bert.encoder.layer.0.output.dense.weight"] = torch.zeros(32, 63)
    _rewrite(tiny, state)
    with pytest.raises(CheckpointMismatchError) as exc:
        load_model(tiny)
    assert "\n" not in str(exc.value) and "size mismatch" in str(exc.value)
