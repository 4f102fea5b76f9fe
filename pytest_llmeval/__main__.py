"""``python -m pytest_llmeval``: the ``llmeval`` command."""

from __future__ import annotations

import sys

from pytest_llmeval.cli import main

sys.exit(main())
