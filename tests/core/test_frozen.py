"""Numbered freezes: handing back an earlier freeze never undoes a later one."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pytest_llmeval.core import frozen


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # whatever a test left frozen goes back (this process froze nothing itself)


def test_the_last_freeze_is_handed_back() -> None:
    number = frozen.freeze()
    assert gc.get_freeze_count() > 0
    assert frozen.unfreeze_if_last(number) is True
    assert gc.get_freeze_count() == 0


def test_an_earlier_freeze_stays_when_a_later_one_was_made() -> None:
    first = frozen.freeze()
    second = frozen.freeze()
    assert second > first
    assert frozen.unfreeze_if_last(first) is False
    assert gc.get_freeze_count() > 0  # the later freeze (which holds the earlier) stays
    assert frozen.unfreeze_if_last(second) is True
    assert gc.get_freeze_count() == 0
