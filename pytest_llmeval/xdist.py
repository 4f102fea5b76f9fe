"""The only module that knows pytest-xdist.

Workers collect and run; they send per-case records on their test reports (serialised by
xdist) and their collection facts, as plain builtins, in ``workeroutput``. Only the controller
decides gates and writes files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_llmeval.session import LLMEvalState


def send_collection(config: pytest.Config, state: LLMEvalState) -> None:
    """On a worker: put what it collected into ``workeroutput`` (builtins only)."""
    output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
    output["llmeval"] = {
        "collected_files": sorted(state.collected_files),
        "collected_keys": sorted(state.collected_keys),
        "deselected": int(state.deselected),
        "cache_problems": state.cache_problems(),
        "collection_errors": int(state.collection_errors),
    }


class XdistHooks:
    """Controller-side xdist hooks (registered only when xdist is installed)."""

    def __init__(self, state: LLMEvalState) -> None:
        self.state = state

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # the controller collects nothing itself: learn the number of cases from a worker
        if not self.state.expected_cases:
            self.state.expected_cases = sum(1 for i in ids if ".jsonl::" in i)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get("llmeval")
        if not data:
            return
        # every worker collects the same items: merge by union, deselection by max
        self.state.collected_files.update(data["collected_files"])
        self.state.collected_keys.update(data["collected_keys"])
        self.state.deselected = max(self.state.deselected, int(data["deselected"]))
        self.state.worker_problems.extend(data.get("cache_problems", []))
        self.state.collection_errors = max(
            self.state.collection_errors, int(data.get("collection_errors", 0))
        )
