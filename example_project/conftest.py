"""Connects the Parcelly support bot to pytest-llmeval.

The bot version comes from ``SUPPORT_BOT_VERSION`` (default ``v2``, the production version);
``SUPPORT_BOT_VERSION=broken pytest example_project`` evaluates the worse candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support_bot import SupportBot

from pytest_llmeval import Case


@pytest.fixture(scope="session")
def llmeval_sut() -> Callable[[Case], str]:
    """The system under test: one bot for the whole session, answering each case."""
    bot = SupportBot.from_env()

    def answer(case: Case) -> str:
        if case.messages is not None:
            return bot.reply([(m.role, m.content) for m in case.messages])
        return bot.ask(case.question)

    return answer
