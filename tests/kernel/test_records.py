"""kernel.records: the one check of version and keys that every stored-JSON contract goes through."""
from dataclasses import dataclass

import pytest

from kernel.records import record_unknown_keys, record_values, record_version


@dataclass(frozen=True)
class Sample:
    a: int
    b: str
    c: float | None = None


def test_a_record_without_a_version_is_version_0_and_known_versions_pass():
    assert record_version({"a": 1}, what="The sample", latest=2) == 0
    assert record_version({"version": 2}, what="The sample", latest=2) == 2


@pytest.mark.parametrize("version", [3, -1, True, "1", 1.0])
def test_an_unknown_version_is_refused_by_its_value(version):
    with pytest.raises(ValueError, match=f"The sample: version {version!r} is unknown; .* versions 0 .* to 2"):
        record_version({"version": version}, what="The sample", latest=2)


def test_a_record_that_is_not_a_dict_is_refused_naming_its_type():
    with pytest.raises(ValueError, match="The sample must be a dict, got list"):
        record_version([1], what="The sample", latest=1)
    with pytest.raises(ValueError, match="The sample must be a dict, got str"):
        record_values(Sample, "a", what="The sample")


def test_values_name_the_unknown_and_the_missing_keys():
    with pytest.raises(ValueError, match="The sample has unknown keys d, e; allowed keys are a, b, c"):
        record_values(Sample, {"a": 1, "b": "x", "e": 0, "d": 0}, what="The sample")
    with pytest.raises(ValueError, match="The sample lacks keys b, c"):
        record_values(Sample, {"a": 1}, what="The sample")
    assert record_unknown_keys(Sample, {"a": 1, "version": 1}, what="The sample", ignore=("version",)) is None


def test_defaults_fill_what_an_old_version_lacks_and_optional_keys_may_be_absent():
    assert record_values(Sample, {"version": 0, "a": 1}, what="s", defaults={"b": "old", "c": 0.5}) == {
        "a": 1, "b": "old", "c": 0.5}
    assert record_values(Sample, {"a": 1, "b": "x"}, what="s", optional=("c",)) == {"a": 1, "b": "x"}
    assert record_values(Sample, {"a": 1, "b": "new"}, what="s", defaults={"b": "old", "c": 0.0})["b"] == "new"
