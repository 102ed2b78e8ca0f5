"""The engine picks its memory layout by timing both on this host, once per case, and says what it chose and why."""

import dataclasses

import pytest
import torch

from iri_worker.engine import InversionSpec, invert, layout_cache_clear, layout_calibrate, load_backbone
from iri_worker.engine.layout import RUN_STEPS_NEEDED


class FakeClock:
    """A clock that only moves when a fake step runs: the timings are exact, not a race on a shared host."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_in(layout_is_channels_last: bool, clock: FakeClock, calls: list):
    """A step that takes 5 ms in the named layout and 1 ms in the other."""

    def step(channels_last: bool) -> None:
        calls.append(channels_last)
        clock.now += 0.005 if channels_last == layout_is_channels_last else 0.001

    return step


@pytest.fixture(autouse=True)
def empty_cache():
    layout_cache_clear()
    yield
    layout_cache_clear()
    load_backbone("tiny_cnn").set_channels_last(False)


@pytest.mark.parametrize("slow_layout_is_channels_last", [True, False])
def test_the_faster_layout_wins_and_its_timings_are_kept(tiny, random_images, slow_layout_is_channels_last):
    clock, calls = FakeClock(), []
    choice = layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), clock=clock,
                              run_step=slow_in(slow_layout_is_channels_last, clock, calls))

    assert choice.channels_last is (not slow_layout_is_channels_last)
    slow, fast = ("channels_last", "nchw") if slow_layout_is_channels_last else ("nchw", "channels_last")
    assert choice.ms_per_step == {slow: 5.0, fast: 1.0}
    # five times faster is decisive after one warm-up and one timed step each
    assert choice.timed_steps == 1 and calls.count(True) == calls.count(False) == 2
    record = choice.to_dict()
    assert record["layout"] == fast and record["source"] == "calibrated" and record["cached"] is False
    assert record["cost_ms"] == pytest.approx(2 * 5 + 2 * 1)


def test_layouts_too_close_to_call_after_one_step_each_are_timed_again(tiny, random_images):
    clock, calls = FakeClock(), []

    def step(channels_last: bool) -> None:
        calls.append(channels_last)
        clock.now += 0.00105 if channels_last else 0.001  # 5 % apart: below DECISIVE

    choice = layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), clock=clock, run_step=step)

    assert choice.timed_steps == 2 and calls.count(True) == calls.count(False) == 3
    assert choice.channels_last is False and choice.ms_per_step == {"nchw": 1.0, "channels_last": 1.05}


def test_the_same_case_is_timed_once_per_process_and_a_new_shape_is_timed_again(tiny, random_images):
    clock, calls = FakeClock(), []
    step = slow_in(True, clock, calls)
    first = layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), clock=clock, run_step=step)
    timed = len(calls)
    again = layout_calibrate(backbone=tiny, layer="pool", images=random_images(4, seed=9), clock=clock, run_step=step)

    assert len(calls) == timed  # no step ran the second time
    assert again.cached and again.cost_ms == 0 and again.channels_last == first.channels_last
    assert again.ms_per_step == first.ms_per_step

    layout_calibrate(backbone=tiny, layer="pool", images=random_images(8), clock=clock, run_step=step)
    layout_calibrate(backbone=tiny, layer="relu1", images=random_images(4), clock=clock, run_step=step)
    assert len(calls) == 3 * timed  # another batch, another layer: each timed on its own


def test_a_run_without_a_named_layout_times_both_on_its_own_first_steps_and_records_it(random_images):
    spec = InversionSpec(backbone="tiny_cnn", steps=RUN_STEPS_NEEDED + 2, step_size=0.1)
    steps_seen = []
    result = invert(spec, random_images(2), on_step=lambda i, _losses: steps_seen.append(i))
    record = result.layout_calibration

    assert record["source"] == "calibrated" and not record["cached"] and record["timed_steps"] in (1, 2)
    assert set(record["ms_per_step"]) == {"nchw", "channels_last"}
    assert all(ms > 0 for ms in record["ms_per_step"].values())
    assert record["layout"] == min(record["ms_per_step"], key=record["ms_per_step"].get)
    # the timed steps were the run's: a warm-up and the timed steps per layout, and no step more than the spec's
    assert record["run_steps"] == 2 * (1 + record["timed_steps"])
    assert steps_seen == list(range(spec.steps)) and result.steps_run == spec.steps
    again = invert(spec, random_images(2)).layout_calibration  # the next chunk reuses the choice
    assert again["cached"] and again["run_steps"] == 0 and again["layout"] == record["layout"]


def test_a_run_timed_on_its_own_steps_gives_the_images_of_a_run_in_the_chosen_layout(random_images, tiny):
    spec = InversionSpec(backbone="tiny_cnn", steps=12, step_size=0.1, step_rule="adam", transforms="cifar")
    timed = invert(spec, random_images(2, seed=3))
    chosen = timed.layout_calibration["layout"] == "channels_last"
    named = invert(dataclasses.replace(spec, channels_last=chosen), random_images(2, seed=3))

    assert timed.layout_calibration["run_steps"] > 0 and named.layout_calibration["source"] == "named by the spec"
    # the layouts differ only in float rounding (test_method's channels-last test), so do the runs
    assert torch.allclose(timed.images, named.images, atol=1e-5)
    assert torch.allclose(timed.losses, named.losses, rtol=1e-4)
    # the whole backbone is left in the run's layout, not only the weights the folded block put back
    assert all(p.is_contiguous(memory_format=torch.channels_last if chosen else torch.contiguous_format)
               for p in tiny.module.parameters() if p.dim() == 4)


def test_a_run_too_short_to_time_both_layouts_runs_nchw_and_caches_nothing(random_images):
    spec = InversionSpec(backbone="tiny_cnn", steps=RUN_STEPS_NEEDED - 1, step_size=0.1)
    short = invert(spec, random_images(2)).layout_calibration

    assert short["layout"] == "nchw" and short["source"] == "too few steps to time both layouts"
    assert short["ms_per_step"] == {} and short["run_steps"] == 0
    longer = invert(dataclasses.replace(spec, steps=RUN_STEPS_NEEDED), random_images(2)).layout_calibration
    assert longer["source"] == "calibrated" and not longer["cached"]


def test_time_spent_in_on_step_is_not_counted_against_a_layout(random_images):
    import time

    def slow_heartbeat(step: int, _losses) -> None:
        if step < 2:  # the NCHW warm-up and timed step: a worker writing its progress to the database
            time.sleep(0.2)

    spec = InversionSpec(backbone="tiny_cnn", steps=RUN_STEPS_NEEDED, step_size=0.1)
    record = invert(spec, random_images(2), on_step=slow_heartbeat).layout_calibration

    assert record["source"] == "calibrated" and record["ms_per_step"]["nchw"] < 150


@pytest.mark.parametrize("named", [True, False])
def test_a_layout_named_by_the_spec_is_used_without_timing(random_images, named, monkeypatch):
    import importlib

    invert_module = importlib.import_module("iri_worker.engine.invert")  # the module, not the function
    monkeypatch.setattr(invert_module, "layout_calibrate", lambda **_: pytest.fail("the spec named the layout"))
    spec = InversionSpec(backbone="tiny_cnn", steps=2, step_size=0.1, channels_last=named)
    record = invert(spec, random_images(2)).layout_calibration

    assert record["layout"] == ("channels_last" if named else "nchw")
    assert record["source"] == "named by the spec" and record["ms_per_step"] == {} and record["timed_steps"] == 0


def test_the_stored_spec_leaves_an_unnamed_layout_to_the_worker_and_keeps_a_named_one():
    assert InversionSpec.from_dict({"backbone": "tiny_cnn"}).to_dict()["channels_last"] is None
    assert InversionSpec.from_dict({"backbone": "tiny_cnn", "channels_last": True}).to_dict()["channels_last"] is True


def test_a_backbone_that_runs_only_nchw_is_never_timed_in_channels_last(tiny, random_images):
    only_nchw = dataclasses.replace(tiny, supports_channels_last=False)
    clock, calls = FakeClock(), []
    choice = layout_calibrate(backbone=only_nchw, layer="pool", images=random_images(2), clock=clock,
                              run_step=slow_in(False, clock, calls))

    assert calls == [] and choice.channels_last is False
    assert choice.to_dict()["source"] == "the only layout this backbone runs"
    spec = InversionSpec(backbone="tiny_cnn", steps=1, channels_last=True)
    with pytest.raises(ValueError, match="channels_last: backbone 'tiny_cnn' runs only the NCHW layout"):
        invert(spec, random_images(2), backbone=only_nchw)


def test_forcing_channels_last_on_the_vit_is_refused_naming_the_field():
    with pytest.raises(ValueError) as error:
        InversionSpec.from_dict({"backbone": "vit_b_16", "channels_last": True})
    assert "channels_last: backbone 'vit_b_16' runs only the NCHW layout" in str(error.value)
    assert InversionSpec.from_dict({"backbone": "vit_b_16", "channels_last": False}).channels_last is False
    assert load_backbone("vit_b_16").supports_channels_last is False
    assert torch.backends.cpu.get_cpu_capability()  # the cache key's CPU part is known on this torch


def test_another_cpu_or_precision_is_timed_anew(tiny, random_images, monkeypatch):
    import importlib

    layout = importlib.import_module("iri_worker.engine.layout")
    clock, calls = FakeClock(), []
    step = slow_in(True, clock, calls)
    layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), clock=clock, run_step=step)
    timed = len(calls)
    layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), amp=True, clock=clock, run_step=step)
    monkeypatch.setattr(layout, "cpu_capability", lambda: "AVX2")  # the same worker image on another host
    on_avx2 = layout_calibrate(backbone=tiny, layer="pool", images=random_images(4), clock=clock, run_step=step)

    assert len(calls) == 3 * timed and on_avx2.cpu_capability == "AVX2" and not on_avx2.cached
