"""Reading a Messages API answer: token usage, the structured JSON output, the verdict."""

from __future__ import annotations

import json
import re
from typing import Any

from pytest_llmeval.core.secrets import scrub
from pytest_llmeval.core.verdict import JudgeResult, Usage
from pytest_llmeval.judges import prompts

_LABEL_UNSAFE = re.compile(r"[^a-z0-9]+")


class InvalidOutput(Exception):
    """The model answered, but not with a valid verdict."""


def usage_of(message: Any) -> Usage:
    usage = getattr(message, "usage", None)
    if usage is None:  # a malformed answer (see json_output): count the request only
        return Usage(requests=1)
    return Usage(
        input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0),
        cache_creation_input_tokens=int(usage.cache_creation_input_tokens or 0),
        cache_read_input_tokens=int(usage.cache_read_input_tokens or 0),
        requests=1,
    )


_VALIDATORS: dict[int, Any] = {}


def prepare_validator(schema: dict[str, Any]) -> Any:
    """The (cached) ``jsonschema`` validator of ``schema``; importing and building it takes a
    tenth of a second, so :meth:`ClaudeClient.warm_up` does it before the first answer."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(schema)
        _VALIDATORS[id(schema)] = validator
    return validator


def _validate(data: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    validator = prepare_validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "verdict"
        raise InvalidOutput(f"schema violation at {where}: {error.message}")


def json_output(message: Any, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The validated JSON object of a structured-output reply, or :class:`InvalidOutput`."""
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        # The SDK hands back a str for a non-JSON body and a loosely built model for JSON of
        # the wrong shape; neither is a Messages API answer.
        raise InvalidOutput(f"the API returned a malformed response ({type(message).__name__})")
    stop = getattr(message, "stop_reason", None)
    if stop == "refusal":
        raise InvalidOutput("the model refused to answer")
    if stop == "max_tokens":
        raise InvalidOutput(f"the answer was cut off at max_tokens={max_tokens}")
    text = "".join(
        str(getattr(block, "text", "")) for block in content if getattr(block, "type", "") == "text"
    ).strip()
    if not text:
        raise InvalidOutput("the answer contained no text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        snippet = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidOutput(f"the answer is not JSON: {snippet!r}") from None
    _validate(data, schema)
    if not isinstance(data, dict):  # pragma: no cover - the schema requires an object
        raise InvalidOutput("the answer is not a JSON object")
    return data


def _label(mode: str) -> str:
    return _LABEL_UNSAFE.sub("_", mode.strip().lower()).strip("_")


def verdict(message: Any, usage: Usage, max_tokens: int) -> JudgeResult:
    """The validated verdict of a score answer, with secrets scrubbed from its text."""
    data = json_output(message, prompts.VERDICT_SCHEMA, max_tokens)
    # The key never reaches a result, even when the judged text carried it into the answer.
    labels = (_label(scrub(str(x))) for x in data["failure_modes"])
    modes = tuple(dict.fromkeys(m for m in labels if m))
    return JudgeResult(
        score=float(data["score"]),
        reasoning=scrub(str(data["reasoning"]).strip()),
        failure_modes=modes,
        passed=data.get("passed"),
        usage=usage,
    )
