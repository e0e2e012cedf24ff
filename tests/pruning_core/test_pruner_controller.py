"""The pruner's measurements and its density controller, on tiny real models.

* Statistics never draw random numbers: L0 reports its *expected* density, so logging (or the
  controller) cannot change the RNG stream, hence the training.
* The Lagrangian density controller (``Pruner._update_controller``): sign, integral clamp, warm-up,
  cool-down measure, resume, and the exact density of the quantile masks.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForSequenceClassification

from nnprune.pruning_core import Role, build_config, patch_model
from nnprune.pruning_core import binarizers as B
from nnprune.pruning_core.pruner import MAX_MULTIPLIER, PROPORTIONAL_GAIN, SOFT_WIDTH

# configure(TOTAL) with the presets' warm-ups 0.1 / 0.3: warm-up steps 0..10 (progress 0),
# pruning 11..69, cool-down 70.. (progress 1).
TOTAL, WARM, COOL_START = 100, 10, 70
PRUNING_STEPS = TOTAL - WARM - 30


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=2)).eval()


def set_scores(pruner, value=None, *, std: float = 2.0, mean: float = 0.0, seed: int = 0) -> None:
    """Every score to ``value``, or to N(mean, std) from a private generator (global RNG untouched)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in pruner.mask_score_parameters():
            if value is None:
                s.copy_(torch.randn(s.shape, generator=gen) * std + mean)
            else:
                s.fill_(value)


def hand_expected_l0_density(pruner, group=None) -> float:
    """Weight-weighted P(gate != 0) over every patched matrix (FFN-out reads its FFN-in scores)."""
    kept = total = 0.0
    for p in pruner:
        if group is not None and p.site.group != group:
            continue
        owner = p.layer.score_source or p.layer
        kept += float(B.l0_expected_density(owner.mask_scores.detach()).sum()) * p.layer.block_size
        total += p.layer.weight.numel()
    return kept / total


# ----------------------------------------------------------------------------- no RNG in stats
@pytest.mark.parametrize("ffn_block", ["1x1", "ffn_dim"])
def test_l0_statistics_use_expected_density_and_draw_no_random_numbers(ffn_block):
    model = tiny_model()
    pruner = patch_model(model, build_config("l0", overrides={"ffn_block": ffn_block}))
    set_scores(pruner, std=2.0)
    pruner.configure(TOTAL)
    pruner.step(40)
    model.train()
    model(torch.randint(0, 1000, (2, 7)))  # a training forward (fills the FFN mask cache)
    rng = torch.get_rng_state()
    first, second = pruner.stats(), pruner.stats()
    d1, d2 = pruner.density(training=True), pruner.density(training=True)
    ffn = pruner.density(training=True, group="ffn")
    kept = [p.layer.kept_weights(training=True) for p in pruner]
    assert torch.equal(torch.get_rng_state(), rng), "statistics drew random numbers"
    assert first == second and d1 == d2
    assert first["pruning/density"] == pytest.approx(hand_expected_l0_density(pruner), rel=1e-6)
    assert d1 == pytest.approx(hand_expected_l0_density(pruner), rel=1e-6)
    assert ffn == pytest.approx(hand_expected_l0_density(pruner, "ffn"), rel=1e-6)
    # Not a 0/1 count: the expectation (a sample would give whole blocks).
    assert any(k != int(k) for k in kept)
    # The forward still samples its gates: two training forwards differ.
    x = torch.randint(0, 1000, (2, 7))
    assert not torch.equal(model(x).logits, model(x).logits)


def test_l0_controller_in_cool_down_draws_no_random_numbers():
    """With a target, L0's controller measures the expected density in every phase."""
    model = tiny_model()
    pruner = patch_model(model, build_config("l0", target_density=0.5))
    set_scores(pruner, std=2.0)
    pruner.configure(TOTAL)
    for i in range(COOL_START):
        pruner.step(i)
    rng = torch.get_rng_state()
    integral = pruner.integral
    pruner.step(COOL_START)
    assert torch.equal(torch.get_rng_state(), rng)
    error = hand_expected_l0_density(pruner) - 0.5
    expected = integral + pruner.config.density_controller_gain / PRUNING_STEPS * error
    assert pruner.integral == pytest.approx(expected, rel=1e-9)
    assert pruner.multiplier == pytest.approx(expected + PROPORTIONAL_GAIN * error, rel=1e-9)


def _short_l0_training(log_every_step: bool, extra_draw: bool = False) -> list[torch.Tensor]:
    model = tiny_model()
    pruner = patch_model(model, build_config(
        "l0", overrides={"initial_warmup": 0, "final_warmup": 0, "attention_lambda": 1,
                         "ffn_lambda": 1}))
    pruner.configure(6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(123)
    model.train()
    for step in range(6):
        pruner.step(step)
        ids = torch.randint(0, 1000, (4, 9))
        labels = torch.randint(0, 2, (4,))
        loss = model(input_ids=ids, labels=labels).loss + pruner.regularization_loss()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if log_every_step:
            pruner.stats()
        if extra_draw:
            torch.rand(1)
    return [s.detach().clone() for s in pruner.mask_score_parameters()]


def test_logging_does_not_change_training():
    """The user-visible bug: logging the L0 density used to sample gates, shifting the RNG
    stream (dropout, gates, data) and so the whole run."""
    quiet = _short_l0_training(log_every_step=False)
    logged = _short_l0_training(log_every_step=True)
    assert all(torch.equal(a, b) for a, b in zip(quiet, logged))
    # The comparison can fail: the scores moved, and one stray random draw per step shows.
    assert any(not torch.equal(a, torch.full_like(a, 2.197)) for a in quiet)
    shifted = _short_l0_training(log_every_step=False, extra_draw=True)
    assert any(not torch.equal(a, b) for a, b in zip(quiet, shifted))


# ----------------------------------------------------------------------------- the controller
def controlled(method: str = "soft-movement", target: float = 0.3, **overrides):
    model = tiny_model()
    pruner = patch_model(model, build_config(method, target_density=target,
                                             overrides=overrides or None))
    pruner.configure(TOTAL)
    return model, pruner


def soft_error(pruner) -> float:
    """``soft density - min(scheduled target, soft_start)``: the controller's error while pruning."""
    return pruner.soft_density() - min(pruner.target_at_progress(), pruner.soft_start)


def test_multiplier_is_zero_before_pruning_starts():
    model, pruner = controlled()
    set_scores(pruner, 5.0)  # far above the target: would push a positive multiplier
    for i in range(WARM + 1):
        pruner.step(i)
        assert pruner.progress == 0
        assert pruner.multiplier == 0.0 and pruner.integral == 0.0 and pruner.soft_start is None
        assert float(pruner.regularization_loss().detach()) == 0.0
    pruner.step(WARM + 1)
    assert pruner.progress > 0 and pruner.multiplier > 0


def test_density_above_target_makes_multiplier_grow():
    model, pruner = controlled()
    set_scores(pruner, 3.0)  # every score kept: soft density sigmoid(3 - logit(0.1)) = 0.9945
    multipliers, integrals = [], []
    for i in range(WARM + 1, 40):
        pruner.step(i)
        error = soft_error(pruner)
        assert error > 0
        assert pruner.multiplier == pytest.approx(pruner.integral + PROPORTIONAL_GAIN * error)
        multipliers.append(pruner.multiplier)
        integrals.append(pruner.integral)
    assert pruner.soft_start == pytest.approx(torch.sigmoid(torch.tensor(3 + math.log(9.0))).item())
    assert all(m > 0 for m in multipliers)
    assert all(b > a for a, b in zip(multipliers, multipliers[1:]))
    assert all(b > a for a, b in zip(integrals, integrals[1:]))
    # A positive multiplier pushes the scores down (towards pruning).
    pruner.regularization_loss().backward()
    assert all((s.grad > 0).all() for s in pruner.mask_score_parameters())


def test_density_below_target_makes_multiplier_fall_and_go_negative():
    model, pruner = controlled()
    set_scores(pruner, 3.0)
    pruner.step(WARM + 1)  # soft_start recorded with the scores high
    assert pruner.multiplier > 0
    set_scores(pruner, -10.0)  # overshoot: almost nothing kept
    multipliers, integrals = [pruner.multiplier], [pruner.integral]
    for i in range(WARM + 2, 40):
        pruner.step(i)
        assert soft_error(pruner) < 0
        multipliers.append(pruner.multiplier)
        integrals.append(pruner.integral)
    assert all(b < a for a, b in zip(multipliers, multipliers[1:]))
    assert all(b < a for a, b in zip(integrals, integrals[1:]))
    assert multipliers[-1] < 0 and integrals[-1] < 0
    # A negative multiplier pushes the scores *up*: masks can grow back.
    assert float(pruner.regularization_loss().detach()) < 0
    pruner.regularization_loss().backward()
    assert all((s.grad < 0).all() for s in pruner.mask_score_parameters())


def test_integral_is_clamped():
    model, pruner = controlled(density_controller_gain=1e4)
    set_scores(pruner, 3.0)
    for i in range(WARM + 1, 30):
        pruner.step(i)
        assert pruner.integral <= MAX_MULTIPLIER
    assert pruner.integral == MAX_MULTIPLIER
    assert pruner.multiplier == pytest.approx(MAX_MULTIPLIER + PROPORTIONAL_GAIN * soft_error(pruner))
    set_scores(pruner, -10.0)
    for i in range(30, 60):
        pruner.step(i)
        assert pruner.integral >= -MAX_MULTIPLIER
    assert pruner.integral == -MAX_MULTIPLIER
    assert pruner.multiplier == pytest.approx(-MAX_MULTIPLIER + PROPORTIONAL_GAIN * soft_error(pruner))


def test_cool_down_measures_nominal_density_of_quantile_masks():
    """From the cool-down on, the threshold methods' controller measures the hard fraction of
    weights above the nominal cut (logit(0.1) for sigmoid threshold), not the soft density."""
    model, pruner = controlled(target=0.3)
    set_scores(pruner, std=3.0, mean=-1.0)
    for i in range(COOL_START):
        pruner.step(i)
    integral = pruner.integral
    pruner.step(COOL_START)
    cut = math.log(0.1 / 0.9)
    kept = sum(float((s.detach() > cut).sum()) for s in pruner.mask_score_parameters())
    total = sum(s.numel() for s in pruner.mask_score_parameters())  # 1x1 blocks
    assert pruner.nominal_density() == pytest.approx(kept / total)
    assert pruner.nominal_density() != pytest.approx(pruner.soft_density(), abs=1e-3)
    error = kept / total - 0.3
    assert pruner.integral == pytest.approx(integral + 50.0 / PRUNING_STEPS * error)
    assert pruner.multiplier == pytest.approx(pruner.integral + PROPORTIONAL_GAIN * error)


def test_controller_state_round_trips_for_resume():
    def run(load=None, start=0, stop=COOL_START + 5):
        model, pruner = controlled("hybrid-nt", 0.5, attention_block="8x8")
        set_scores(pruner, std=2.0, seed=1)
        if load is not None:
            pruner.load_state_dict(load)
        out = []
        for i in range(start, stop):
            if i == 30 and load is None:
                out.append(json.loads(json.dumps(pruner.state_dict())))  # as the checkpoint does
            pruner.step(i)
            out.append(pruner.multiplier)
        return out

    full = run()
    state = next(x for x in full if isinstance(x, dict))
    multipliers = [x for x in full if not isinstance(x, dict)]
    assert state["soft_start"] is not None and state["integral"] != 0
    resumed = run(load=state, start=30)
    assert resumed == multipliers[30:]
    fresh = run(start=30)  # the same steps without the saved state
    assert [x for x in fresh if not isinstance(x, dict)] != multipliers[30:]
    # Also on the pruner itself: loading restores every field.
    model, pruner = controlled()
    pruner.load_state_dict(state)
    assert pruner.state_dict() == state


def test_topk_with_regularization_and_target_keeps_the_plain_ramp():
    """topK reaches the target through its schedule; a controller would read the keep fraction
    (0.3) as a score cut. Its lambda keeps ramping with the schedule as without a target."""
    model, pruner = controlled("movement", 0.3, regularization="l1", attention_lambda=1,
                               ffn_lambda=1)
    assert not pruner.controls_density
    set_scores(pruner, std=2.0)
    for i in (5, 30, 60, 90):
        pruner.step(i)
        assert pruner.multiplier == pruner.progress
    sig = [float(torch.sigmoid(s.detach()).mean()) for s in pruner.mask_score_parameters()]
    groups = {"attention": [], "ffn": []}
    for p, v in zip(pruner.score_owners, sig):
        groups[p.site.group].append(v)
    hand = sum(sum(v) / len(v) for v in groups.values())
    assert float(pruner.regularization_loss().detach()) == pytest.approx(hand, rel=1e-6)
    pruner.finalize()
    assert pruner.density() == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("binarizer", ["threshold", "sigmoid_threshold"])
@pytest.mark.parametrize("target", [0.2, 0.55])
def test_quantile_masks_keep_the_target_fraction(binarizer, target):
    """Target-density mode of the threshold binarizers: the masks keep the scheduled fraction of
    the weights during training and exactly the target at eval, within one block."""
    model, pruner = controlled("hybrid-nt", target, binarizer=binarizer, attention_block="8x8")
    set_scores(pruner, std=2.0, mean=-1.0, seed=2)
    total = sum(p.layer.weight.numel() for p in pruner)
    block = max(p.layer.weights_per_score for p in pruner.score_owners)

    def kept_by_masks(training: bool) -> float:
        return sum(float(p.layer.expand(p.layer.block_mask(training)).detach().sum()) for p in pruner) / total

    for i in (20, 45):
        pruner.step(i)
        pruner.density(training=True)  # sets the training cut
        scheduled = pruner.target_at_progress()
        assert 0 <= kept_by_masks(True) - scheduled < block / total
    pruner.finalize()
    eval_density = kept_by_masks(False)
    assert 0 <= eval_density - target < block / total
    assert pruner.density() == pytest.approx(eval_density)
    # FFN rows and columns share one mask.
    fin = next(p.layer for p in pruner if p.site.role is Role.FFN_IN)
    fout = next(p.layer for p in pruner if p.site.role is Role.FFN_OUT)
    assert torch.equal(fin.block_mask(False).flatten(), fout.block_mask(False).flatten())


def test_regularizer_and_controller_share_the_per_score_quantity():
    """Both use ``soft_keep``: the controller its weight-weighted mean (soft_density), the
    regulariser its per-layer means, averaged per group and scaled by the group lambdas."""
    model, pruner = controlled("hybrid-nt", 0.5, attention_block="8x8", attention_lambda=2,
                               ffn_lambda=3)
    set_scores(pruner, std=2.0, seed=3)
    pruner.multiplier = 1.0
    cut = math.log(0.1 / 0.9)
    groups = {"attention": [], "ffn": []}
    num = den = 0.0
    for p in pruner.score_owners:
        keep = torch.sigmoid((p.layer.mask_scores.detach() - cut) / SOFT_WIDTH)
        groups[p.site.group].append(float(keep.mean()))
        num += float(keep.sum()) * p.layer.weights_per_score
        den += keep.numel() * p.layer.weights_per_score
    assert pruner.soft_density() == pytest.approx(num / den, rel=1e-6)
    hand = 2 * sum(groups["attention"]) / len(groups["attention"]) + 3 * sum(groups["ffn"]) / len(groups["ffn"])
    assert float(pruner.regularization_loss().detach()) == pytest.approx(hand, rel=1e-6)


def test_shared_ffn_measurement_reads_current_scores_and_forward_reuses_the_sample():
    """A measurement recomputes the FFN-out mask from the current scores (not the mask cached by
    the last forward); the forward itself still reuses the FFN-in layer's mask (same L0 sample)."""
    model, pruner = controlled("hybrid-nt", 0.5, attention_block="8x8")
    set_scores(pruner, std=2.0, seed=4)
    pruner.step(40)
    model.train()
    model(torch.randint(0, 1000, (2, 7)))
    fin = next(p.layer for p in pruner if p.site.role is Role.FFN_IN)
    fout = next(p.layer for p in pruner if p.site.role is Role.FFN_OUT)
    with torch.no_grad():
        fin.mask_scores.neg_()  # an optimizer step moved the scores since that forward
    pruner.density(training=True)
    assert fin.kept_weights(training=True) == fout.kept_weights(training=True)
    assert torch.equal(fin.block_mask(True).flatten(), fout.block_mask(True).flatten())

    model, pruner = controlled("l0", 0.5, ffn_block="ffn_dim")
    set_scores(pruner, std=1.0, seed=5)
    model.train()
    fin = next(p.layer for p in pruner if p.site.role is Role.FFN_IN)
    fout = next(p.layer for p in pruner if p.site.role is Role.FFN_OUT)
    fin(torch.randn(3, fin.in_features))
    sample = fin._cached_mask.reshape(fout.grid)
    assert ((sample > 0) & (sample < 1)).any()  # a real hard-concrete sample
    x = torch.randn(3, fout.in_features)
    rng = torch.get_rng_state()
    out = fout(x)
    assert torch.equal(torch.get_rng_state(), rng)  # no new sample drawn
    expected = torch.nn.functional.linear(x, fout.weight * fout.expand(sample),
                                          fout.bias * fout.row_mask(sample))
    assert torch.allclose(out, expected)
