"""Talk to the bot: ``python -m support_bot "How do I cancel?"`` or ``python -m support_bot``.

Without arguments it starts a chat that keeps the conversation (empty line or Ctrl-D to quit).
``SUPPORT_BOT_VERSION`` picks the version, as in the evaluation.
"""

from __future__ import annotations

import sys

from support_bot.bot import SupportBot


def main(argv: list[str]) -> int:
    bot = SupportBot.from_env()
    if argv:
        print(bot.ask(" ".join(argv)))
        return 0
    print(f"Parcelly support bot {bot.version} (empty line to quit)")
    turns: list[tuple[str, str]] = []
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            return 0
        if not question:
            return 0
        turns.append(("user", question))
        answer = bot.reply(turns)
        turns.append(("assistant", answer))
        print(f"bot> {answer}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
