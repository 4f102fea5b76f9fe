"""The pytest plugin: the only package that imports pytest.

pytest loads this module through the ``pytest11`` entry point; the hooks and fixtures it finds
here live in :mod:`pytest_llmeval.plugin.hooks` and :mod:`pytest_llmeval.plugin.fixtures`.
"""

from __future__ import annotations

from pytest_llmeval.plugin.fixtures import llmeval_ab, llmeval_judge, llmeval_record, llmeval_sut
from pytest_llmeval.plugin.hooks import (
    pytest_addoption,
    pytest_collect_file,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_collectionfinish,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_unconfigure,
)

__all__ = [
    "llmeval_ab",
    "llmeval_judge",
    "llmeval_record",
    "llmeval_sut",
    "pytest_addoption",
    "pytest_collect_file",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_report_collectionfinish",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_unconfigure",
]
