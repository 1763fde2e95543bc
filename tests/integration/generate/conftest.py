"""Fixtures of the generator tests: the loopback Petstore API (and document server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.petstore_api import PetstoreApi


@pytest.fixture(scope="module")
def petstore() -> Iterator[PetstoreApi]:
    api = PetstoreApi().start()
    yield api
    api.stop()
