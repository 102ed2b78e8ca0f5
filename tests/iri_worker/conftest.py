import pytest

from tests import factories


@pytest.fixture(autouse=True)
def iri_sets_from_the_engine(monkeypatch):
    """Tests about IRI jobs make every IRI set with the engine, never from a recording."""
    monkeypatch.setattr(factories, "REPLAY", False)
