"""precision "auto": the engine runs bf16 only where a few timed steps on this host find it faster and the loss after
the same steps stays within 1 % of fp32's; it says what it chose and why, once per case."""

import dataclasses
import importlib

import pytest
import torch

from iri_worker.engine import (
    InversionSpec, invert, layout_cache_clear, load_backbone, precision_cache_clear, precision_calibrate,
)
from iri_worker.engine.calibration import Deadline, TooSlow, backbone_step_runner
from iri_worker.engine.precision import GIVE_UP, LOSS_STEPS

precision_module = importlib.import_module("iri_worker.engine.precision")


class FakeClock:
    """A clock that only moves when a fake step runs: the timings are exact, not a race on a shared host."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps_taking(fp32_ms: float, bf16_ms: float, clock: FakeClock, calls: list):
    """A step of 20 'modules', each moving the clock by a twentieth of the step and checking the deadline after it,
    as the real step checks it after every module."""

    def step(amp: bool, deadline: Deadline) -> None:
        calls.append(amp)
        for _ in range(20):
            clock.now += (bf16_ms if amp else fp32_ms) / 1000 / 20
            deadline.check()

    return step


def losses_of(fp32: float, bf16: float, asked: list):
    def final_loss(amp: bool, steps: int) -> float:
        asked.append((amp, steps))
        return bf16 if amp else fp32

    return final_loss


def calibrate(tiny, random_images, step, final_loss, clock, **changes):
    arguments = {"backbone": tiny, "layer": "pool", "images": random_images(4), "channels_last": False,
                 "final_loss": final_loss, "case": "reg_free", "clock": clock, "run_step": step, **changes}
    return precision_calibrate(**arguments)


@pytest.fixture(autouse=True)
def empty_caches():
    precision_cache_clear()
    layout_cache_clear()
    yield
    precision_cache_clear()
    layout_cache_clear()
    load_backbone("tiny_cnn").set_channels_last(False)


def test_bf16_faster_with_the_same_loss_is_chosen_and_both_losses_are_kept(tiny, random_images):
    clock, calls, asked = FakeClock(), [], []
    choice = calibrate(tiny, random_images, steps_taking(5.0, 2.0, clock, calls), losses_of(0.500, 0.503, asked),
                       clock)

    assert choice.precision == "bf16" and choice.source == "calibrated"
    assert choice.ms_per_step == {"fp32": 5.0, "bf16": 2.0} and choice.timed_steps == 1  # 2.5x: decisive at once
    assert asked == [(False, LOSS_STEPS), (True, LOSS_STEPS)]  # the same steps in each precision
    record = choice.to_dict()
    assert record["final_loss"] == {"fp32": 0.5, "bf16": 0.503} and record["loss_rel_diff"] == pytest.approx(0.006)
    assert record["loss_steps"] == LOSS_STEPS and "within 1%" in record["reason"]
    assert record["cost_ms"] == pytest.approx(2 * 5 + 2 * 2) and record["cpu_capability"]


def test_bf16_faster_but_a_loss_more_than_one_percent_off_stays_fp32(tiny, random_images):
    clock, asked = FakeClock(), []
    choice = calibrate(tiny, random_images, steps_taking(5.0, 2.0, clock, []), losses_of(0.500, 0.510, asked), clock)

    assert choice.precision == "fp32" and choice.loss_rel_diff == pytest.approx(0.02)
    assert "2.0% off fp32's" in choice.reason and "more than 1%" in choice.reason


def test_bf16_slower_stays_fp32_without_running_the_loss_check(tiny, random_images):
    clock, calls, asked = FakeClock(), [], []
    choice = calibrate(tiny, random_images, steps_taking(2.0, 3.0, clock, calls), losses_of(0.5, 0.5, asked), clock)

    assert choice.precision == "fp32" and choice.reason == "bf16 is not faster on this host"
    assert choice.ms_per_step == {"fp32": 2.0, "bf16": 3.0} and not choice.bf16_given_up
    assert asked == [] and choice.final_loss == {} and choice.loss_rel_diff is None
    assert calls.count(True) == 2  # a warm-up and one timed step: 1.5x slower is decisive


def test_a_bf16_step_many_times_slower_is_stopped_before_it_ends(tiny, random_images):
    """On a CPU without native bf16 a bf16 step costs 12-25 fp32 steps: the warm-up is stopped at GIVE_UP times the
    fp32 warm-up, so the whole calibration costs a few fp32 steps."""
    clock, calls, asked = FakeClock(), [], []
    choice = calibrate(tiny, random_images, steps_taking(2.0, 40.0, clock, calls), losses_of(0.5, 0.5, asked), clock)

    assert choice.precision == "fp32" and choice.bf16_given_up and "stopped" in choice.reason
    assert calls == [False, False, True]  # fp32 warm-up and timed step; bf16's warm-up, stopped: nothing more
    assert GIVE_UP * 2.0 <= choice.ms_per_step["bf16"] <= GIVE_UP * 2.0 + 2.0 + 1e-6  # stopped within a 'module'
    assert choice.cost_ms < 40.0 and asked == []  # less than one whole bf16 step


def test_the_same_case_is_measured_once_per_process_and_another_layout_or_recipe_again(tiny, random_images):
    clock, calls, asked = FakeClock(), [], []
    step, final_loss = steps_taking(5.0, 2.0, clock, calls), losses_of(0.5, 0.5, asked)
    first = calibrate(tiny, random_images, step, final_loss, clock)
    measured = len(calls)
    again = calibrate(tiny, random_images, step, final_loss, clock, images=random_images(4, seed=9))

    assert len(calls) == measured and len(asked) == 2  # nothing ran the second time
    assert again.cached and again.cost_ms == 0 and again.precision == first.precision == "bf16"

    calibrate(tiny, random_images, step, final_loss, clock, channels_last=True)
    calibrate(tiny, random_images, step, final_loss, clock, case="freq_tv")
    assert len(calls) == 3 * measured and len(asked) == 6


def test_a_device_where_torch_cannot_autocast_bf16_stays_fp32_untimed(tiny, random_images, monkeypatch):
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device_type: False)
    clock, calls, asked = FakeClock(), [], []
    choice = calibrate(tiny, random_images, steps_taking(5.0, 2.0, clock, calls), losses_of(0.5, 0.5, asked), clock)

    assert choice.precision == "fp32" and choice.source == "bf16 not supported on this device"
    assert calls == [] and asked == []


def test_the_real_step_checks_the_deadline_in_the_forward_and_in_the_backward(tiny, random_images):
    """The deadline is checked after every module's forward and after its gradient (autograd runs the backward
    with grad mode off, which tells the two apart), and TooSlow stops the step from inside the backward."""
    grad_mode_at_check = []

    def clock() -> float:
        grad_mode_at_check.append(torch.is_grad_enabled())
        return float(len(grad_mode_at_check))

    deadline = Deadline(clock)
    run = backbone_step_runner(tiny, "pool", random_images(2), deadline)
    run(False, False)
    assert True in grad_mode_at_check and False in grad_mode_at_check
    first_backward_check = grad_mode_at_check.index(False) + 1

    grad_mode_at_check.clear()
    deadline.at = first_backward_check - 0.5
    with pytest.raises(TooSlow):
        run(False, False)
    assert grad_mode_at_check[-1] is False  # stopped in the backward
    deadline.at = float("inf")
    run(False, True)  # bf16 runs, and no hook was left behind
    assert not any(module._forward_hooks for module in tiny.module.modules())


def test_a_run_with_precision_auto_records_its_choice_and_runs_as_if_the_spec_had_named_it(random_images):
    spec = InversionSpec(backbone="tiny_cnn", steps=4, step_size=0.1, precision="auto", channels_last=False)
    result = invert(spec, random_images(2))
    record = result.precision_calibration

    assert record["source"] == "calibrated" and not record["cached"] and record["precision"] in ("fp32", "bf16")
    assert set(record["ms_per_step"]) == {"fp32", "bf16"} and all(ms > 0 for ms in record["ms_per_step"].values())
    assert record["cost_ms"] > 0 and record["reason"]
    if record["final_loss"]:  # bf16 was faster here: the loss check ran
        assert record["loss_steps"] == LOSS_STEPS and record["loss_rel_diff"] is not None
    # the calibration leaves the run as it was: the same images as a run naming the chosen precision
    named = invert(dataclasses.replace(spec, precision=record["precision"]), random_images(2))
    assert torch.equal(result.images, named.images) and torch.equal(result.losses, named.losses)
    assert named.precision_calibration["source"] == "named by the spec"
    assert invert(spec, random_images(2)).precision_calibration["cached"]  # the next chunk reuses the choice


def test_a_named_precision_is_used_without_timing(random_images, monkeypatch):
    invert_module = importlib.import_module("iri_worker.engine.invert")
    monkeypatch.setattr(invert_module, "precision_calibrate", lambda **_: pytest.fail("the spec named it"))
    for precision in ("fp32", "bf16"):
        spec = InversionSpec(backbone="tiny_cnn", steps=2, step_size=0.1, precision=precision)
        record = invert(spec, random_images(2)).precision_calibration
        assert record["precision"] == precision and record["source"] == "named by the spec"
        assert record["ms_per_step"] == {} and record["timed_steps"] == 0


def test_a_worker_that_cannot_run_a_named_bf16_refuses_the_run_naming_the_field(random_images, monkeypatch):
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device_type: False)
    spec = InversionSpec(backbone="tiny_cnn", steps=2, precision="bf16")
    with pytest.raises(ValueError, match="precision: this host cannot run 'bf16' on cpu .*it supports fp32, auto"):
        invert(spec, random_images(2))
    auto = invert(dataclasses.replace(spec, precision="auto"), random_images(2)).precision_calibration
    assert auto["precision"] == "fp32" and auto["source"] == "bf16 not supported on this device"
