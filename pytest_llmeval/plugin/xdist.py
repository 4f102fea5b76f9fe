"""The only module that knows pytest-xdist.

Workers collect and run; they send case results on their test reports (serialised by xdist)
and their collection ledger, as plain builtins, in ``workeroutput``. Only the controller
decides gates and writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pytest_llmeval.plugin.ledger import CollectionLedger

if TYPE_CHECKING:
    import pytest


class XdistRun(Protocol):
    """What this module needs of the run (:class:`pytest_llmeval.plugin.session.LLMEvalRun`)."""

    ledger: CollectionLedger

    def cache_problems(self) -> list[str]: ...

    def set_run_keys(self, keys: Sequence[str]) -> None: ...

    def activate(self) -> None: ...


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


def send_collection(config: pytest.Config, state: XdistRun) -> None:
    """On a worker: put its collection ledger into ``workeroutput`` (builtins only)."""
    output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
    output["llmeval"] = {**state.ledger.to_builtins(), "cache_problems": state.cache_problems()}


class XdistHooks:
    """Controller-side xdist hooks (registered only when xdist is installed)."""

    def __init__(self, state: XdistRun) -> None:
        self.state = state

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # the controller collects nothing itself: learn the run's cases from a worker
        if self.state.ledger.expected_cases:
            return
        keys = [i for i in ids if ".jsonl::" in i]
        if keys:
            self.state.set_run_keys(keys)
            self.state.activate()

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get("llmeval")
        if data:
            self.state.ledger.merge_worker(data, data.get("cache_problems", []))
