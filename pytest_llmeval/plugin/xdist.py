"""The only module that knows pytest-xdist.

Workers collect and run; they send per-case records on their test reports (serialised by
xdist) and their collection facts, as plain builtins, in ``workeroutput``. Only the controller
decides gates and writes files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_llmeval.plugin.session import LLMEvalState


def upcoming_items(config: pytest.Config, limit: int) -> list[pytest.Item]:
    """On a worker: the next items xdist has already assigned to it (at most ``limit``).

    xdist keeps them in its worker's queue; reading it lets a worker evaluate cases ahead the
    way a single process does. Anything unexpected in xdist's internals means "none known".
    """
    interactor = next(
        (p for p in config.pluginmanager.get_plugins() if type(p).__name__ == "WorkerInteractor"),
        None,
    )
    if interactor is None or limit <= 0:
        return []
    try:
        items: list[pytest.Item] = interactor.session.items
        indices: list[int] = []
        following = interactor.nextitem_index
        if isinstance(following, int):
            indices.append(following)
        with interactor.torun.lock() as queue:
            indices.extend(i for i in list(queue)[:limit] if isinstance(i, int))
        return [items[i] for i in indices[:limit]]
    except (AttributeError, IndexError, TypeError):
        return []


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
