"""bench/engine_demo.py: the demo's job with the layout measured against the same job with the layout named, in
alternating pairs, and what calibration adds as the difference of the two. The runs are faked here (each real one is
a new process running the demo's job); the order, the layout each named run names and the figures are checked."""
import pytest

from bench import engine_demo


def fake_runs(monkeypatch, *, measured: list[tuple[str, float]], named_s: list[float]) -> list[dict]:
    """Each measured run chooses the next (layout, job seconds) of ``measured``; each named run takes the next of
    ``named_s`` and runs the layout its spec names. Returns the specs the runs were given, in order."""
    measured, named_s, specs = iter(measured), iter(named_s), []

    def run(settings: dict) -> dict:
        spec = settings["spec"]
        specs.append(spec)
        if "channels_last" in spec:
            layout = "channels_last" if spec["channels_last"] else "nchw"
            calibration, job_s = {"layout": layout, "source": "named by the spec", "cost_ms": 0.0}, next(named_s)
        else:
            layout, job_s = next(measured)
            calibration = {"layout": layout, "source": "calibrated", "cost_ms": 300.0, "timed_steps": 1,
                           "ms_per_step": {"nchw": 50.0, "channels_last": 40.0}, "run_steps": 4}
        return {"job_s": job_s, "early_s": job_s / 30, "later_ms_per_step": job_s, "backbone_load_s": 1.5,
                "batch": 4, "threads": 2,
                "layout_calibration": calibration}

    monkeypatch.setattr(engine_demo, "_job_in_new_process", run)
    return specs


def test_pairs_alternate_and_the_named_runs_name_what_most_calibrations_chose(monkeypatch):
    specs = fake_runs(monkeypatch, measured=[("nchw", 12.4), ("channels_last", 12.2), ("channels_last", 12.3),
                                             ("channels_last", 12.1)], named_s=[12.0, 12.1, 11.9, 12.0])

    report = engine_demo.demo_job_pairs(model="efficientnet_lite0", image_size=128, steps=300, pairs=4, threads=2,
                                        keep_freed_memory=True)

    assert [spec.get("channels_last") for spec in specs] == [None, False, False, None, None, True, True, None]
    assert [pair["first"] for pair in report["job_s_by_pair"]] == ["layout_measured", "layout_named"] * 2
    assert [pair["named_layout"] for pair in report["job_s_by_pair"]] == ["nchw", "nchw", "channels_last",
                                                                          "channels_last"]
    assert specs[0] == {"backbone": "efficientnet_lite0", "recipe": "reg_free", "seed_kind": "super-noise",
                        "steps": 300, "step_size": 1.0, "image_size": 128, "rng_seed": 0}
    assert report["layout_chosen"] == "channels_last"
    assert report["job_s_layout_measured"] == 12.25 and report["job_s_layout_named"] == 12.0
    assert report["added_s"] == 0.25 and report["added_share_of_job"] == pytest.approx(0.25 / 12.0, abs=1e-4)
    assert report["pair_added_s_median"] == pytest.approx(0.25)
    assert report["calibration_cost_ms_recorded"] == 300.0
    assert report["calibration_run_steps_by_run"] == [4] * 4
    # the fake's later steps take as many ms as its job seconds: the ratios per pair, 12.4 / 12.0, 12.2 / 12.1, ...
    ratios = sorted([12.4 / 12.0, 12.2 / 12.1, 12.3 / 11.9, 12.1 / 12.0])
    assert report["later_steps_measured_over_named"] == pytest.approx((ratios[1] + ratios[2]) / 2, abs=1e-4)
    assert report["named_runs_timed_nothing"] is True


def test_a_named_run_that_calibrated_anyway_is_reported(monkeypatch):
    fake_runs(monkeypatch, measured=[("channels_last", 12.2)], named_s=[12.0])
    faithful_run = engine_demo._job_in_new_process

    def calibrating_named_run(settings):
        run = faithful_run(settings)
        if "channels_last" in settings["spec"]:  # as if the engine ignored the spec's layout
            run["layout_calibration"].update(source="calibrated", cost_ms=250.0)
        return run

    monkeypatch.setattr(engine_demo, "_job_in_new_process", calibrating_named_run)
    report = engine_demo.demo_job_pairs(model="efficientnet_lite0", image_size=128, steps=300, pairs=1, threads=None,
                                        keep_freed_memory=False)

    assert report["named_runs_timed_nothing"] is False
