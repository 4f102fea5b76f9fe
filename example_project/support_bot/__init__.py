"""Parcelly support assistant: the example application evaluated by ``pytest example_project``.

>>> from support_bot import SupportBot
>>> SupportBot("v2").ask("How do I cancel?")  # doctest: +ELLIPSIS
'You can cancel at any time...'
"""

from __future__ import annotations

from support_bot.bot import DEFAULT_VERSION, SYSTEM_PROMPT, VERSIONS, Features, SupportBot

__all__ = ["DEFAULT_VERSION", "SYSTEM_PROMPT", "VERSIONS", "Features", "SupportBot"]
