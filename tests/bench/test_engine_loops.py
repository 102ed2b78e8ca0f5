"""bench/engine_loops.py: how a loop's speed is read from its steps' time stamps, and that the engine's rate leaves
out the steps its layout calibration timed."""
import pytest

from bench import engine_loops
from iri_worker.engine import InversionSpec, layout_cache_clear, load_backbone
from iri_worker.engine.layout import RUN_STEPS_NEEDED


def test_a_step_the_host_interrupted_does_not_move_the_rate():
    # four steps of 1 s, one of them held up for 8 s: the median step is 1 s, where the mean would say 2.75 s
    assert engine_loops.steps_per_s([0.0, 1.0, 2.0, 10.0, 11.0]) == pytest.approx(1.0)
    assert engine_loops.steps_per_s([0.0, 0.5, 1.0]) == pytest.approx(2.0)


def test_the_floor_keeps_the_layout_that_was_faster_in_either_of_its_two_timings():
    timings = {False: [5.0, 9.0], True: [3.0, 8.0]}  # NCHW's first timing and channels-last's were held up
    calls = []

    def loop(channels_last: bool) -> float:
        calls.append(channels_last)
        return timings[channels_last].pop(0)

    assert engine_loops.layouts_timed(loop) == {False: 9.0, True: 8.0}
    assert calls == [False, True, True, False]  # drift over the four falls on both layouts alike


def test_the_engine_rate_is_timed_after_the_steps_that_chose_the_layout(monkeypatch):
    import torch

    layout_cache_clear()
    backbone = load_backbone("tiny_cnn")
    targets = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ran = []
    invert = engine_loops.invert
    monkeypatch.setattr(engine_loops, "invert", lambda spec, *a, **k: ran.append(spec.steps) or invert(spec, *a, **k))
    spec = InversionSpec(backbone="tiny_cnn", steps=4, step_size=0.1)

    engine_loops.engine_run(backbone, spec, targets, 4)  # not cached: the run times both layouts first
    engine_loops.engine_run(backbone, spec, targets, 4)  # cached: it runs in the kept layout from step 0

    assert ran == [engine_loops.WARMUP + RUN_STEPS_NEEDED + 4, engine_loops.WARMUP + 4]
    backbone.set_channels_last(False)
    layout_cache_clear()


def test_interleaved_loops_take_turns_step_by_step_inside_one_engine_run(monkeypatch):
    import torch

    backbone = load_backbone("tiny_cnn")
    generator = torch.Generator().manual_seed(0)
    targets, x0 = (torch.rand(2, 3, 32, 32, generator=generator) for _ in range(2))
    order = []
    extract, invert = engine_loops.extract, engine_loops.invert
    monkeypatch.setattr(engine_loops, "extract", lambda *a: order.append("floor") or extract(*a))
    monkeypatch.setattr(engine_loops, "invert", lambda spec, *a, on_step, **k: invert(
        spec, *a, on_step=lambda i, losses: order.append("engine") or on_step(i, losses), **k))
    spec = InversionSpec(backbone="tiny_cnn", steps=4, step_size=0.1, channels_last=False)

    engine_rate, floor_rate = engine_loops.interleaved_rates(backbone, spec, targets, x0, 4)

    assert order == ["engine", "floor"] * (engine_loops.WARMUP + 4 + 1)
    assert engine_rate > 0 and floor_rate > 0
