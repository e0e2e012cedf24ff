"""Layer-wise distillation (``nnprune.hidden_distillation_loss``, ``prune --then-fill
--distill-hidden``): a compacted student is compared with its teacher at the layers and channels
it kept, and the fill trains with it."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import save_tiny_model, tiny_config, write_toy_sst2

import nnprune
from nnprune.pruning_core.compact import compact_model
from nnprune.pruning_core.width_depth import apply_width_depth

KEEP = [31, 0, 2, 3, 5, 7, 8, 11, 12, 13, 17, 18, 19, 20, 23, 24, 26, 27, 29, 30]


def _states(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def test_a_compacted_student_matches_its_masked_self_at_the_kept_layers_and_channels():
    """The masked model (stream narrowed, layer 1 skipped) has the dense model's shapes: as a
    teacher of its own compacted model, the layer-wise loss is zero only if the map picks the
    right dense layer and channels for every student state."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    masked = AutoModelForSequenceClassification.from_config(
        tiny_config("bert", num_labels=2, num_hidden_layers=3)).eval()
    with torch.no_grad():  # non-trivial LayerNorm affines: a wrong channel shows
        for name, p in masked.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.3 * torch.randn_like(p))
    apply_width_depth(masked, KEEP, [1])
    student = copy.deepcopy(masked)
    compact_model(student)
    layers, channels = nnprune.student_hidden_map(student)
    assert layers == [0, 1, 3] and channels == sorted(KEEP)
    ids, mask = torch.randint(5, 1000, (2, 12)), torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    s, t = _states(student, ids, mask), _states(masked, ids, mask)
    assert [x.shape[-1] for x in s] == [20, 20, 32]  # the last one put back at the dense width
    loss = nnprune.hidden_distillation_loss(s, t, (layers, channels), mask)
    assert float(loss) < 1e-9
    # a wrong map is not zero: the layer removed, or other channels
    assert float(nnprune.hidden_distillation_loss(s, t, ([0, 1, 2], channels), mask)) > 1e-3
    shifted = sorted(KEEP)[1:] + [1]
    assert float(nnprune.hidden_distillation_loss(s, t, (layers, shifted), mask)) > 1e-3
    # positions outside the mask do not count
    t_noisy = tuple(x.clone() for x in t)
    for x in t_noisy:
        x[1, 8:] += 5.0
    assert float(nnprune.hidden_distillation_loss(s, t_noisy, (layers, channels), mask)) < 1e-9


def test_a_model_of_other_depth_with_no_record_is_refused():
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=2))
    dropped = nnprune.drop_layers(teacher, [1])
    with pytest.raises(nnprune.NNPruneError, match="no record of which the student kept"):
        nnprune.student_hidden_map(dropped, teacher)
    assert nnprune.student_hidden_map(teacher, teacher) == ([0, 1, 2], None)


def _exit_code(main, argv) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_prune_then_fill_distils_hidden_states(tmp_path, capsys, caplog):
    """``prune --then-fill N --distill-hidden W`` trains the fill with the layer-wise term (its
    logs show it), records the weight, and the result still compacts and evaluates."""
    from nnprune.cli.main import main

    model = save_tiny_model(tmp_path / "tiny")
    data = write_toy_sst2(tmp_path / "toy")
    out = tmp_path / "out"
    argv = ["prune", str(model), "sst2", "--target-flops", "0.6", "--then-fill", "4",
            "--distill-hidden", "1.0", "--data-dir", str(data), "--batch-size", "8",
            "--max-seq-length", "16", "--calibration-samples", "32", "--max-eval-samples", "16",
            "--no-speed-probe", "--output-dir", str(out)]
    assert _exit_code(main, argv) == 0
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(steps) == 4 and all("hidden_loss" in line for line in steps)
    record = json.loads((out / "nnprune_config.json").read_text())
    assert "alpha_hidden" in json.dumps(record)
    assert nnprune.load_pretrained(out) is not None
    with pytest.raises(nnprune.NNPruneError, match="--distill-hidden must be >= 0"):
        from nnprune.workflows.fill import FillArgs
        FillArgs(checkpoint=out, task="sst2", output_dir=tmp_path / "x", alpha_hidden=-1.0)
    capsys.readouterr()
    assert _exit_code(main, argv[:5] + ["--distill-hidden", "1", "--output-dir", str(tmp_path / "y"),
                                        "--data-dir", str(data)]) == 2
    assert "add --then-fill" in capsys.readouterr().err


def test_layerwise_distillation_alone_trains_with_its_term(tmp_path, caplog):
    """``alpha_hidden`` without logit distillation (``alpha_teacher=0``) still distils the
    hidden states: the teacher runs and every step logs the layer-wise term."""
    from nnprune.cli.main import main

    model = save_tiny_model(tmp_path / "tiny")
    data = write_toy_sst2(tmp_path / "toy")
    argv = ["fine-prune", "sst2", "--model", str(model), "--teacher", str(model), "--method", "dense",
            "--set", "alpha_teacher=0", "--set", "alpha_hidden=1", "--data-dir", str(data),
            "--max-steps", "3", "--batch-size", "8", "--max-seq-length", "16", "--logging-steps", "1",
            "--max-eval-samples", "16", "--output-dir", str(tmp_path / "out")]
    assert _exit_code(main, argv) == 0
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(steps) == 3 and all("hidden_loss" in line and "distill_loss" not in line for line in steps)
