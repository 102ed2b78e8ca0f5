"""bench/adaptive.py's simulator keeps what the shipped collection keeps (no block over-filled, no trial twice, a stop
for good), and its benchmark reports every figure issue 20 asks for. No database."""
import numpy as np

from bench.adaptive import MODEL, SCENARIOS, scenario_run
from bench.adaptive_collection import Collection, layout_build

SMALL = {**MODEL, "items_per_condition": 12, "slots": 6, "places_per_block": 10, "concurrency": 4,
         "abandon_share": 0.1, "fixed_max_n": 8}


def test_the_simulated_collection_never_overfills_a_block_and_stops_for_good():
    layout = layout_build(units=list(range(36)), condition_of=lambda item: item // 12, n_conditions=3,
                          trials_per_participant=6, places=5)
    assert layout.blocks_per_participant == 3 and set(layout.block_sizes.tolist()) == {2}
    collection = Collection(layout=layout, goal=0.3, rng_seed=4, cap_participants=None)
    rng, in_flight, completed, stopped_at = np.random.default_rng(1), [], [], None
    for _ in range(400):
        ordinal = collection.enroll() if len(in_flight) < 3 else None
        if ordinal is not None:
            blocks = collection.sessions[ordinal]
            items = collection.items_of(ordinal).tolist()
            assert len(set(blocks)) == len(blocks) and len(set(items)) == len(items) <= 6  # no trial twice
            in_flight.append(ordinal)
        elif in_flight:
            person = in_flight.pop(int(rng.integers(len(in_flight))))
            if rng.random() < 0.1:
                collection.abandon(person)
            else:
                collection.complete(person, rng.random(collection.items_of(person).size) < 0.5)
                completed.append(person)
        else:
            break
        assert np.all(collection.filled + collection.held <= layout.places) and np.all(collection.held >= 0)
        if collection.estimate.stop and stopped_at is None:
            stopped_at = (collection.completed, collection.estimate.reason)
        if stopped_at:  # stopped for good: nobody enrolls, the reason stays
            assert collection.estimate.stop and collection.estimate.reason == stopped_at[1]
            assert collection.enroll() is None
    assert stopped_at is not None and not collection.under_way
    # only completed sessions count, and each fills its places
    assert collection.answers == sum(collection.items_of(o).size for o in completed)
    assert collection.filled.sum() == sum(len(collection.sessions[o]) for o in completed)


def test_a_small_benchmark_run_reports_answers_ratios_coverage_and_shortfalls():
    out = scenario_run(index=0, mu=SCENARIOS["paper"][7:], studies=3, goal=0.15, model=SMALL, seed=0, workers=1)

    assert out["adaptive"]["answers_mean"] > 0 and out["oracle"]["answers_mean"] > 0
    assert out["adaptive_over_oracle"] > 0 and out["adaptive_over_oracle_se"] >= 0
    assert out["fixed"]["n"] is None or out["adaptive_over_fixed"] > 0
    assert len(out["coverage"]["per_set"]) == 5 and 0 <= out["coverage"]["worst"]["coverage"] <= 1
    assert out["coverage"]["mid_pooled"] is not None and 0 <= out["adaptive"]["short_of_goal"] <= 1
    assert sum(out["adaptive"]["stop_reasons"].values()) == 3
