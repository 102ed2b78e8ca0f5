"""The answer endpoint validates bodies by hand (the hot path) and documents them with a serializer: for any JSON
body, both must say the same thing, valid or the same error message, because clients read the documented one."""
import uuid

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from backend.exceptions import api_exception_handler
from surveys.answer_api import RT_MAX_MS, ResponseCreateApi, _answer_fields

FIELDS = ("trial", "choice", "rt_ms", "idempotency_key")

# Values a JSON body can hold (integers under the 4300 digits json.loads reads), leaning on the edges.
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and infinities too: json.loads reads them
    st.sampled_from([0, 1, 2, 3, -1, 0.0, 1.0, 2.5, -0.0, RT_MAX_MS, RT_MAX_MS + 1, 2**128 - 1, 2**128, 10**309]),
)
tricky_strings = st.sampled_from([
    "", " ", "\t\n", "0", "1", "2", "3", " 1", "1.0", "-0", "nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e-9",
    "86400000", "86400000.5", "0x10", "1_000", "１２", "\x00", "a\x00", "\ud800", "t\udfff", "x" * 40, " " + "x" * 40 + " ",
    "x" * 41, "9" * 1001, str(uuid.UUID(int=7)), str(uuid.UUID(int=7)).upper(), "{%s}" % uuid.UUID(int=7),
    "urn:uuid:%s" % uuid.UUID(int=7), uuid.UUID(int=7).hex, "٠" * 32, "True", "null",
])
strings = st.one_of(tricky_strings, st.text(), st.text(st.characters(exclude_categories=()), max_size=50))
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)

plausible = {
    "trial": st.one_of(st.text(max_size=45), st.integers(), st.floats()),
    "choice": st.sampled_from([0, 1, 2, "0", "1", "2", 3, "3", 1.0, True]),
    "rt_ms": st.one_of(st.floats(min_value=-10, max_value=RT_MAX_MS + 10), st.integers(min_value=-10, max_value=RT_MAX_MS + 10).map(str)),
    "idempotency_key": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.int), st.uuids().map(lambda u: u.hex)),
}
answer_fields = st.fixed_dictionaries({}, optional={name: st.one_of(plausible[name], json_values) for name in FIELDS})
extra_fields = st.dictionaries(st.text(max_size=8).filter(lambda key: key not in FIELDS), json_values, max_size=3)
bodies = st.one_of(st.builds(lambda extra, fields: {**extra, **fields}, extra_fields, answer_fields), json_values)


def api_message(errors) -> dict:
    """What a client reads for these errors: the project's error shape."""
    return {"message": api_exception_handler(ValidationError(errors), {}).data["message"]}


def by_hand(body):
    values, errors = _answer_fields(body)
    return ("invalid", api_message(errors)) if errors else ("valid", values)


def by_serializer(body):
    serializer = ResponseCreateApi.InputSerializer(data=body)
    return ("valid", dict(serializer.validated_data)) if serializer.is_valid() else ("invalid", api_message(serializer.errors))


@settings(max_examples=1000, deadline=None)
@given(bodies)
@example({"trial": "t1", "choice": 1, "rt_ms": 812.5, "idempotency_key": str(uuid.UUID(int=1))})
@example(None)
@example([])
@example({"trial": " t1 ", "choice": "1", "rt_ms": "12", "idempotency_key": True})
@example({"trial": "t\ud800", "choice": 0, "rt_ms": float("nan"), "idempotency_key": 2**128})
@example({"trial": "t", "choice": 0, "rt_ms": "1" * 1001, "idempotency_key": 1})
@example({"trial": "t", "choice": 0, "rt_ms": 10**400, "idempotency_key": 1})
@example({"trial": "t", "choice": 0, "rt_ms": float("inf"), "idempotency_key": 1})
def test_the_hand_validator_and_the_serializer_give_the_same_verdict_and_message(body):
    assert by_hand(body) == by_serializer(body)
