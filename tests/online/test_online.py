"""The event store: ingest, identity, concurrency and every metric against hand counts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from online_helpers import T0, ev, fail_the_third_apply, ingest_at_once, resp, write_jsonl

from pytest_llmeval import online
from pytest_llmeval.online import (
    EventStore,
    RecordError,
    StoreError,
    ab_readout,
    canary_readout,
    interleave,
    interleaving_credit,
    interleaving_test,
)
from pytest_llmeval.online import store as online_store
from pytest_llmeval.stats import proportion_ci, sign_test

# The hand-counted fixture (window = 500 s ending at T0 + 100):
#   r1 s1 control  T0+10: copied twice, thumbs up then down (latest: down), continue
#   r2 s1 control  T0+20: quick rephrase-retry (5 s)
#   r3 s2 treatm.  T0+30: copied, thumbs up, slow rephrase-retry (60 s)
#   r4 s3 treatm.  T0+40: nothing at all (a session with no events)
#   r5 s4 control  T0-1000: outside the window, thumbs down
#   s1 completes (session-level event, no response id) at T0+70 -> 60 s after r1
#   a copy of r99, a response never shown, at T0+50
FIXTURE = [
    resp("r1", "s1", T0 + 10, user_id="u1", variant="control", model="m1", question="q1"),
    resp("r2", "s1", T0 + 20, user_id="u1", variant="control", model="m1", question="q2"),
    resp("r3", "s2", T0 + 30, user_id="u2", variant="treatment", model="m2", question="q3"),
    resp("r4", "s3", T0 + 40, user_id="u3", variant="treatment", model="m2", question="q4"),
    resp("r5", "s4", T0 - 1000, user_id="u4", variant="control", model="m1", question="q5"),
    ev("copy", "r1", T0 + 11, session_id="s1"),
    ev("copy", "r1", T0 + 12, session_id="s1"),
    ev("thumbs_up", "r1", T0 + 13, session_id="s1"),
    ev("thumbs_down", "r1", T0 + 14, session_id="s1"),
    ev("continue", "r1", T0 + 15, session_id="s1"),
    ev("rephrase_retry", "r2", T0 + 25, session_id="s1", delay_seconds=5),
    ev("copy", "r3", T0 + 35, session_id="s2"),
    ev("thumbs_up", "r3", T0 + 36, session_id="s2"),
    ev("rephrase_retry", "r3", T0 + 90, session_id="s2", delay_seconds=60),
    ev("task_complete", None, T0 + 70, session_id="s1"),
    ev("copy", "r99", T0 + 50, session_id="s9"),
    ev("thumbs_down", "r5", T0 - 990, session_id="s4"),
]


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    s = EventStore(tmp_path / "online.sqlite3")
    report = s.ingest_file(write_jsonl(tmp_path / "events.jsonl", FIXTURE))
    assert not report.errors
    return s


def counts(m: dict[str, Any]) -> tuple[int, int]:
    return m["numerator"], m["denominator"]


def test_every_metric_matches_the_hand_counts(store: EventStore) -> None:
    d = store.dashboard(window=500, until=T0 + 100)
    assert d["responses_shown"] == 4
    assert d["sessions"] == 3
    assert counts(d["copy_rate"]) == (2, 4)  # r1 (twice, once counted), r3
    assert counts(d["rephrase_retry_rate"]) == (1, 4)  # r2 only: r3's retry took 60 s
    assert counts(d["thumbs_up_rate"]) == (1, 4)  # r3; r1's latest thumb is down
    assert counts(d["thumbs_down_rate"]) == (1, 4)
    assert counts(d["feedback_response_rate"]) == (2, 4)
    assert counts(d["positive_rate"]) == (1, 2)
    assert counts(d["session_continuation_rate"]) == (1, 3)  # s1 of s1, s2, s3
    ttc = d["time_to_task_completion"]
    assert counts(ttc) == (1, 3)
    assert ttc["median_seconds"] == pytest.approx(60.0)
    assert d["unattributed_events"] == 1  # the copy of r99
    assert d["copy_rate"]["rate"] == 0.5
    assert d["copy_rate"]["ci"] == pytest.approx(list(proportion_ci(2, 4)))
    assert d["positive_rate"]["ci"] == pytest.approx(list(proportion_ci(1, 2)))


def test_metrics_per_variant(store: EventStore) -> None:
    d = store.dashboard(window=500, until=T0 + 100, by="variant")
    control, treatment = d["by_variant"]["control"], d["by_variant"]["treatment"]
    assert counts(control["copy_rate"]) == (1, 2)
    assert counts(control["rephrase_retry_rate"]) == (1, 2)
    assert counts(control["thumbs_down_rate"]) == (1, 2)
    assert counts(control["positive_rate"]) == (0, 1)
    assert counts(control["session_continuation_rate"]) == (1, 1)
    assert counts(treatment["copy_rate"]) == (1, 2)
    assert counts(treatment["rephrase_retry_rate"]) == (0, 2)
    assert counts(treatment["thumbs_up_rate"]) == (1, 2)
    assert counts(treatment["positive_rate"]) == (1, 1)
    assert counts(treatment["session_continuation_rate"]) == (0, 2)
    by_model = store.dashboard(window=500, until=T0 + 100, by="model")["by_model"]
    assert set(by_model) == {"m1", "m2"}
    assert counts(by_model["m1"]["copy_rate"]) == (1, 2)


def test_empty_window_gives_no_rate_rather_than_zero(store: EventStore) -> None:
    d = store.dashboard(window=100, until=T0 - 2000)
    assert d["responses_shown"] == 0
    for name in (*online.METRICS, "time_to_task_completion"):
        assert d[name]["rate"] is None
        assert d[name]["ci"] is None
        assert d[name]["denominator"] == 0
    assert d["time_to_task_completion"]["median_seconds"] is None


def test_empty_store(tmp_path: Path) -> None:
    d = EventStore(tmp_path / "x.sqlite3").dashboard(window=None)
    assert d["copy_rate"] == {"rate": None, "numerator": 0, "denominator": 0, "ci": None}


def test_until_excludes_later_responses_and_events(store: EventStore) -> None:
    # At T0+13.5 only r1 and r5 were shown; r1 had two copies and a thumbs-up so far.
    d = store.dashboard(window=None, until=T0 + 13.5)
    assert d["responses_shown"] == 2
    assert counts(d["copy_rate"]) == (1, 2)
    assert counts(d["thumbs_up_rate"]) == (1, 2)  # r1's thumbs-down came later
    assert counts(d["thumbs_down_rate"]) == (1, 2)  # r5
    assert counts(d["session_continuation_rate"]) == (0, 2)


def test_window_all_counts_everything(store: EventStore) -> None:
    d = store.dashboard(window=None, until=T0 + 1000)
    assert d["responses_shown"] == 5
    assert counts(d["thumbs_down_rate"]) == (2, 5)
    assert d["window"]["since"] is None


def test_session_started_before_the_window_keeps_its_earlier_responses(store: EventStore) -> None:
    # Window (T0+15, T0+100]: r1 is outside, but its session s1 (through r2) is in, so s1's
    # continue on r1 counts and its completion time is measured from r1.
    d = store.dashboard(window=85, until=T0 + 100)
    assert d["responses_shown"] == 3
    assert counts(d["session_continuation_rate"]) == (1, 3)
    assert d["time_to_task_completion"]["median_seconds"] == pytest.approx(60.0)
    assert counts(d["copy_rate"]) == (1, 3)  # r1's copies are not r2's


def test_session_level_continue_without_response_id(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    s.record_response("a", session_id="s1", timestamp=T0)
    s.record_response("b", session_id="s2", timestamp=T0)
    s.record_event("continue", None, session_id="s1", timestamp=T0 + 5)
    s.record_event("continue", None, session_id="ghost", timestamp=T0 + 5)
    m = s.metric("session_continuation_rate", window=None, until=T0 + 10)
    assert (m.numerator, m.denominator) == (1, 2)


def test_response_without_session_counts_only_for_response_metrics(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    s.record_response("a", timestamp=T0)
    s.record_copy("whatever", "a", timestamp=T0 + 1)
    d = s.dashboard(window=None, until=T0 + 10)
    assert counts(d["copy_rate"]) == (1, 1)
    assert counts(d["session_continuation_rate"]) == (0, 0)
    assert d["session_continuation_rate"]["rate"] is None


def test_rephrase_retry_delay_rules(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    for rid in "abcd":
        s.record_response(rid, session_id=rid, timestamp=T0)
    s.record_rephrase_retry("a", "a", 30.0, timestamp=T0 + 100)  # at the limit: counts
    s.record_rephrase_retry("b", "b", 30.5, timestamp=T0 + 5)  # the given delay wins
    s.record_event("rephrase_retry", "c", timestamp=T0 + 12)  # no delay: 12 s from shown
    s.record_event("rephrase_retry", "d", timestamp=T0 + 45)  # no delay: 45 s
    m = s.metric("rephrase_retry_rate", window=None, until=T0 + 1000)
    assert (m.numerator, m.denominator) == (2, 4)
    m60 = s.metric("rephrase_retry_rate", window=None, until=T0 + 1000, max_delay_s=60)
    assert m60.numerator == 4


def test_latest_thumb_wins_and_a_tie_in_time_is_a_thumbs_down(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    for rid in "abc":
        s.record_response(rid, session_id="s", timestamp=T0)
    s.record_thumbs_down("s", "a", timestamp=T0 + 1)
    s.record_thumbs_up("s", "a", timestamp=T0 + 2)  # changed their mind: up
    s.record_thumbs_up("s", "b", timestamp=T0 + 3)
    s.record_thumbs_down("s", "b", timestamp=T0 + 3)  # same instant: down
    d = s.dashboard(window=None, until=T0 + 10)
    assert counts(d["thumbs_up_rate"]) == (1, 3)
    assert counts(d["thumbs_down_rate"]) == (1, 3)
    assert counts(d["feedback_response_rate"]) == (2, 3)
    assert counts(d["positive_rate"]) == (1, 2)


def test_latest_thumb_as_of_until(tmp_path: Path) -> None:
    # a: down 1, up 3, down 5; b: up 2 only; c: down 4, up 4 (a tie: down)
    s = EventStore(tmp_path / "db.sqlite3")
    for rid in "abc":
        s.record_response(rid, session_id="s", timestamp=T0)
    s.record_thumbs_down("s", "a", timestamp=T0 + 1)
    s.record_thumbs_up("s", "a", timestamp=T0 + 3)
    s.record_thumbs_down("s", "a", timestamp=T0 + 5)
    s.record_thumbs_up("s", "b", timestamp=T0 + 2)
    s.record_thumbs_down("s", "c", timestamp=T0 + 4)
    s.record_thumbs_up("s", "c", timestamp=T0 + 4)
    expected = {0.5: (0, 0), 1.5: (0, 1), 2.5: (1, 1), 3.5: (2, 0), 4.5: (2, 1), 9: (1, 2)}
    for after, (up, down) in expected.items():
        d = s.dashboard(window=None, until=T0 + after)
        assert (counts(d["thumbs_up_rate"]), counts(d["thumbs_down_rate"])) == (
            (up, 3),
            (down, 3),
        ), after


def test_events_without_a_shown_response_count_nowhere(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    s.record_response("a", session_id="s", timestamp=T0)
    s.record_copy("s", "never-shown", timestamp=T0 + 1)
    s.record_thumbs_down("s", "never-shown", timestamp=T0 + 1)
    d = s.dashboard(window=None, until=T0 + 10)
    assert counts(d["copy_rate"]) == (0, 1)
    assert counts(d["thumbs_down_rate"]) == (0, 1)
    assert d["unattributed_events"] == 2


def test_response_shown_then_full_record_merge(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    s.record_response_shown("s1", "r1", timestamp=T0 + 5)
    s.record_response("r1", session_id="s1", variant="control", question="q?", timestamp=T0)
    (row,) = s.query("SELECT session_id, variant, question, ts FROM responses")
    assert row == ("s1", "control", "q?", T0)  # filled in; earliest shown time kept
    assert s.counts()["responses"] == 1


# ---------------------------------------------------------------------------------------------
# ingest


def test_ingest_is_idempotent(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", FIXTURE)
    s = EventStore(tmp_path / "db.sqlite3")
    first = s.ingest_file(path)
    assert (first.responses_added, first.events_added, first.duplicates) == (5, 12, 0)
    before = s.dashboard(window=None, until=T0 + 1000)
    again = s.ingest_file(path)
    assert (again.responses_added, again.events_added, again.duplicates) == (0, 0, 17)
    assert s.dashboard(window=None, until=T0 + 1000) == before
    assert s.counts() == {"responses": 5, "events": 12, "failures": 0}


def test_event_identity(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    assert s.record_event("copy", "r1", session_id="s", timestamp=T0) is True
    assert s.record_event("copy", "r1", session_id="s", timestamp=T0) is False
    # The same instant written as ISO 8601 is the same event.
    assert s.record_event("copy", "r1", session_id="s", timestamp="2023-11-14T22:13:20Z") is False
    assert s.record_event("copy", "r1", session_id="s", timestamp=T0, event_id="x1") is True
    assert s.record_event("copy", "r1", session_id="s", timestamp=T0, event_id="x1") is False
    assert s.record_event("copy", "r1", session_id="s", timestamp=T0, metadata={"a": 1}) is True
    # metadata is compared canonically: key order does not matter
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            '{"type": "copy", "response_id": "r1", "session_id": "s", "timestamp": 1700000000, '
            '"metadata": {"b": 2, "a": 1}}',
            '{"metadata": {"a": 1, "b": 2}, "timestamp": 1700000000.0, "session_id": "s", '
            '"response_id": "r1", "type": "copy"}',
        ],
    )
    report = s.ingest_file(path)
    assert (report.events_added, report.duplicates) == (1, 1)


def test_timestamps_iso_and_epoch(tmp_path: Path) -> None:
    assert online.parse_timestamp("2023-11-14T22:13:20Z") == T0
    assert online.parse_timestamp("2023-11-14T23:13:20+01:00") == T0
    assert online.parse_timestamp("2023-11-14T22:13:20") == T0  # no offset: UTC
    assert online.parse_timestamp(1700000000) == T0
    assert online.parse_timestamp("1700000000.0") == T0
    bad: object
    for bad in ("yesterday", True, None, [], float("nan")):
        with pytest.raises(RecordError):
            online.parse_timestamp(bad)


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            resp("r1", "s1", T0),
            "{not json",
            ev("copy", None, T0),
            {"type": "copy", "response_id": "r1"},
            {"type": "copy", "response_id": "r1", "timestamp": "soon"},
            {"type": "rephrase_retry", "response_id": "r1", "timestamp": T0, "delay_seconds": -1},
            {
                "type": "response",
                "response_id": "r2",
                "timestamp": T0,
                "question": "a",
                "messages": [{"role": "user", "content": "b"}],
            },
            ["a list"],
            ev("copy", "r1", T0 + 1),
        ],
    )
    s = EventStore(tmp_path / "db.sqlite3")
    report = s.ingest_file(path)
    lines = [(e.line, e.field) for e in report.errors]
    assert lines == [
        (2, None),
        (3, "response_id"),
        (4, "timestamp"),
        (5, "timestamp"),
        (6, "delay_seconds"),
        (7, "messages"),
        (8, None),
    ]
    assert str(report.errors[1]).startswith(f"{path}:3: field 'response_id':")
    assert (report.responses_added, report.events_added) == (1, 1)
    assert report.rejected_files == ()


# Lines where orjson and json could part: each must give the same row or the same message.
_DECODER_EDGES = [
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000000, '
    '"metadata": {"n": 123456789012345678901234567890}}',
    '{"type": "copy", "response_id": 123456789012345678901234567890, "timestamp": 1700000000}',
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000000, "metadata": {"x": NaN}}',
    '{"type": "copy", "response_id": "r1", "timestamp": 1e400}',
    '{"type": "copy", "response_id": "r1", "timestamp": 170000000000000000000}',
    '{"type": "copy", "response_id": "\\ud800", "timestamp": 1700000000}',
    '{"type": "copy", "response_id": "r\\u00e9", "timestamp": 1700000000}',
    '{"type": "copy", "type": "thumbs_up", "response_id": "r1", "timestamp": 1700000001}',
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000002, "metad\\u0061ta": {"a": 1}}',
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000003, "metadata": '
    + "[" * 990
    + "]" * 990
    + "}",
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000004, "metadata": '
    + "[" * 1100
    + "]" * 1100
    + "}",
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000005.123456789012345678}',
    '{"type": "copy", "response_id": "r1", "timestamp": 1700000006} x',
]


def test_both_decoders_give_the_same_rows_and_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llmeval.online import ingest

    path = write_jsonl(tmp_path / "edges.jsonl", _DECODER_EDGES)
    with path.open("ab") as handle:
        handle.write(b'{"type": "copy", "response_id": "r\xff", "timestamp": 1700000000}\n')
    results = []
    for decoder in (ingest._FAST_DECODE, None):
        monkeypatch.setattr(ingest, "_FAST_DECODE", decoder)
        s = EventStore(tmp_path / f"db-{decoder is None}.sqlite3")
        report = s.ingest_file(path)
        results.append((report.to_dict(), s.query("SELECT * FROM events ORDER BY 1, 2, 3, 6")))
    assert results[0][0]["errors"]  # the bad lines are there to be reported
    assert results[0] == results[1]


def test_strict_rejects_the_whole_file(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [resp("r1", "s1", T0), ev("copy", "r1", T0)])
    bad = write_jsonl(tmp_path / "bad.jsonl", [resp("r2", "s2", T0), "oops", ev("copy", "r2", T0)])
    s = EventStore(tmp_path / "db.sqlite3")
    report = s.ingest_files([good, bad], strict=True)
    assert report.rejected_files == (str(bad),)
    assert [e.line for e in report.errors] == [2]
    assert s.counts() == {"responses": 1, "events": 1, "failures": 0}
    assert s.query("SELECT response_id FROM responses") == [("r1",)]


def test_a_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [resp("r1", "s1", T0)] + [ev("copy", "r1", T0 + i) for i in range(10)]
    path = write_jsonl(tmp_path / "e.jsonl", records)
    s = EventStore(tmp_path / "db.sqlite3")
    monkeypatch.setattr(online_store, "_CHUNK", 3)
    calls = fail_the_third_apply(monkeypatch)
    with pytest.raises(sqlite3.OperationalError):
        s.ingest_file(path)
    assert calls["n"] == 3  # two chunks had been written inside the transaction
    assert s.counts() == {"responses": 0, "events": 0, "failures": 0}
    assert s.query("SELECT COUNT(*) FROM facts")[0][0] == 0


def test_blank_lines_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    body = json.dumps(resp("r1", "s1", T0)) + "\r\n\r\n  \n" + json.dumps(ev("copy", "r1", T0))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    report = EventStore(tmp_path / "db.sqlite3").ingest_file(path)
    assert (report.lines, report.responses_added, report.events_added) == (2, 1, 1)
    assert not report.errors


def test_conversations_and_failures(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    s.record_response(
        "r1",
        session_id="s1",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "refund?"},
        ],
        timestamp=T0,
    )
    (row,) = s.query("SELECT question, messages FROM responses")
    assert row[0] == "refund?"
    assert json.loads(row[1])[0] == {"role": "user", "content": "hi"}
    s.log_production_failure("q?", "bad answer", "hallucination", "support_ticket", timestamp=T0)
    s.log_production_failure("q?", "bad answer", "hallucination", "support_ticket", timestamp=T0)
    assert s.counts()["failures"] == 1  # the same failure twice is one
    with pytest.raises(RecordError):
        s.log_production_failure(None, None, "x")


def test_record_batch_is_all_or_nothing(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "db.sqlite3")
    with pytest.raises(RecordError, match="record 1"):
        s.record_batch([resp("r1", "s1", T0), {"type": "copy"}])
    assert s.counts()["responses"] == 0
    report = s.record_batch([resp("r1", "s1", T0), ev("copy", "r1", T0)])
    assert (report.responses_added, report.events_added) == (1, 1)


def test_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no event store"):
        EventStore(tmp_path / "missing.sqlite3", create=False)
    junk = tmp_path / "junk.sqlite3"
    junk.write_text("not a database, just text " * 100)
    with pytest.raises(StoreError, match="not a usable event store"):
        EventStore(junk)
    newer = tmp_path / "newer.sqlite3"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        EventStore(newer)
    s = EventStore(tmp_path / "ok.sqlite3")
    with pytest.raises(StoreError, match="unknown metric"):
        s.metric("click_rate")
    with pytest.raises(StoreError, match="group by"):
        s.dashboard(by="colour")
    with pytest.raises(StoreError, match="positive"):
        s.dashboard(window=0)


def test_a_version_1_store_is_migrated_on_open_and_keeps_every_event(tmp_path: Path) -> None:
    from pytest_llmeval.online import schema

    records = [
        resp("r1", "s1", T0, variant="control"),
        resp("r2", "s1", T0 + 10, variant="treatment"),
        resp("r3", None, T0 + 20, variant="control"),
        ev("copy", "r1", T0 + 1),
        ev("thumbs_down", "r2", T0 + 12),
        ev("thumbs_up", "r2", T0 + 11),
        ev("rephrase_retry", "r3", T0 + 25),
        ev("continue", None, T0 + 30, session_id="s1"),
        ev("task_complete", "r2", T0 + 40),
        ev("copy", "r-never-shown", T0 + 2),
    ]
    path = write_jsonl(tmp_path / "e.jsonl", records)
    fresh = EventStore(tmp_path / "fresh.sqlite3")
    fresh.ingest_file(path)
    # the same records in a store as version 1 wrote it: three tables, user_version 1
    old = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript(schema._V1_TABLES)
    for table in ("responses", "events", "failures"):
        rows = fresh.query(f"SELECT * FROM {table}")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    migrated = EventStore(old, create=False)
    assert migrated.query("PRAGMA user_version")[0][0] == online.SCHEMA_VERSION == 3
    # a new store gets 16 KiB pages; an existing one keeps the page size it was written with
    assert fresh.query("PRAGMA page_size") == [(16384,)]
    assert migrated.query("PRAGMA page_size") == [(4096,)]
    assert migrated.counts() == fresh.counts() == {"responses": 3, "events": 7, "failures": 0}
    for until in (T0 + 100, T0 + 11.5):
        args: dict[str, Any] = {"window": None, "until": until, "by": "variant"}
        assert migrated.dashboard(**args) == fresh.dashboard(**args)
    assert migrated.dashboard(window=None, until=T0 + 100)["unattributed_events"] == 1
    # and it goes on working as a version-2 store
    migrated.record_copy("s1", "r2", timestamp=T0 + 50)
    assert migrated.metric("copy_rate", window=None, until=T0 + 100).numerator == 2


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    EventStore(tmp_path / "db.sqlite3").close()
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == online.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    EventStore(tmp_path / "db.sqlite3", create=False).close()  # reopens without re-creating


def test_two_processes_ingest_at_once(tmp_path: Path) -> None:
    files = []
    for p in range(2):
        records: list[Any] = [resp(f"p{p}-r{i}", f"p{p}-s{i // 3}", T0 + i) for i in range(300)]
        records += [ev("copy", f"p{p}-r{i % 300}", T0 + i, session_id="x") for i in range(3000)]
        files.append(write_jsonl(tmp_path / f"e{p}.jsonl", records))
    db = str(tmp_path / "shared.sqlite3")
    ingest_at_once(db, files)
    with EventStore(db, create=False) as store:
        assert store.counts() == {"responses": 600, "events": 6000, "failures": 0}


# ---------------------------------------------------------------------------------------------
# A/B and canary readouts


def _experiment(tmp_path: Path, control: tuple[int, int], treatment: tuple[int, int]) -> EventStore:
    """Users with one response each; (users, users who copied) per variant."""
    s = EventStore(tmp_path / "ab.sqlite3")
    records: list[dict[str, Any]] = []
    for variant, (n, k) in (("control", control), ("treatment", treatment)):
        for i in range(n):
            rid = f"{variant}-{i}"
            records.append(resp(rid, rid, T0 + i, user_id=rid, variant=variant, experiment="e1"))
            if i < k:
                records.append(ev("copy", rid, T0 + i + 1))
    s.record_batch(records)
    return s


def test_ab_readout_counts_users(tmp_path: Path) -> None:
    s = _experiment(tmp_path, (200, 40), (200, 70))
    # a user who saw both variants is left out; a response without a user too
    s.record_batch(
        [
            resp("x1", "x", T0, user_id="both", variant="control", experiment="e1"),
            resp("x2", "x", T0, user_id="both", variant="treatment", experiment="e1"),
            resp("x3", "y", T0, variant="control", experiment="e1"),
            resp("other", "z", T0, user_id="z", variant="control", experiment="e2"),
        ]
    )
    r = ab_readout(s, "e1", "copy_rate", window=None, until=T0 + 1000)
    assert r.users == {"control": 200, "treatment": 200}
    assert r.hits["control"]["copy_rate"] == 40
    assert r.hits["treatment"]["copy_rate"] == 70
    assert r.users_in_several_variants == 1
    assert r.responses_without_user == 1
    assert r.valid
    assert r.analysis.test.p_value < 0.01
    assert r.recommendation == "ship"
    assert r.to_dict()["unit"] == "user"


def test_ab_readout_guardrail_and_srm(tmp_path: Path) -> None:
    s = _experiment(tmp_path, (300, 60), (150, 60))
    r = ab_readout(s, "e1", "copy_rate", window=None, until=T0 + 1000)
    assert r.srm.mismatch
    assert not r.valid
    assert r.recommendation == "inconclusive"
    assert "sample-ratio mismatch" in r.reasons[0]
    with pytest.raises(StoreError, match="unknown variant 'b'"):
        ab_readout(s, "e1", "copy_rate", treatment="b", window=None, until=T0 + 1000)
    with pytest.raises(StoreError, match="no responses"):
        ab_readout(s, "nope", "copy_rate", window=None, until=T0 + 1000)


def test_ab_guardrail_blocks_shipping(tmp_path: Path) -> None:
    s = _experiment(tmp_path, (400, 80), (400, 140))
    records = [ev("thumbs_down", f"treatment-{i}", T0 + i + 2) for i in range(120)]
    records += [ev("thumbs_down", f"control-{i}", T0 + i + 2) for i in range(40)]
    s.record_batch(records)
    r = ab_readout(
        s, "e1", "copy_rate", guardrails=["thumbs_down_rate"], window=None, until=T0 + 1000
    )
    assert r.hits["treatment"]["thumbs_down_rate"] == 120
    assert [g.worse for g in r.analysis.guardrails] == [True]
    assert r.recommendation == "no_ship"


def _canary_store(tmp_path: Path, down_v1: int, down_v2: int, n: int = 300) -> EventStore:
    s = EventStore(tmp_path / "canary.sqlite3")
    records: list[dict[str, Any]] = []
    for model, downs in (("v1", down_v1), ("v2", down_v2)):
        for i in range(n):
            rid = f"{model}-{i}"
            records.append(resp(rid, rid, T0 + i, model=model, variant="all"))
            if i < downs:
                records.append(ev("thumbs_down", rid, T0 + i + 1))
    s.record_batch(records)
    return s


def test_canary_fails_on_a_significantly_worse_guardrail(tmp_path: Path) -> None:
    s = _canary_store(tmp_path, 15, 45)
    r = canary_readout(
        s, "v1", "v2", ["thumbs_down_rate", "copy_rate"], by="model", window=None, until=T0 + 1e4
    )
    assert not r.passed
    down, copy = r.checks
    assert down.worse and down.p_value is not None and down.p_value < 0.001
    assert (down.candidate.numerator, down.candidate.denominator) == (45, 300)
    assert not copy.worse  # no copies anywhere: equal, not worse
    # the candidate being better is not a failure (one-sided test)
    better = canary_readout(
        s, "v2", "v1", ["thumbs_down_rate"], by="model", window=None, until=T0 + 1e4
    )
    assert better.passed


def test_canary_passes_when_equal_and_errors_on_unknown_group(tmp_path: Path) -> None:
    s = _canary_store(tmp_path, 20, 22)
    r = canary_readout(s, "v1", "v2", ["thumbs_down_rate"], by="model", window=None, until=T0 + 1e4)
    assert r.passed
    with pytest.raises(StoreError, match="no responses for model 'v3'"):
        canary_readout(s, "v1", "v3", ["thumbs_down_rate"], by="model", window=None, until=T0)


# ---------------------------------------------------------------------------------------------
# team-draft interleaving


def test_interleave_is_team_draft() -> None:
    a = ["a1", "a2", "shared", "a3"]
    b = ["shared", "b1", "b2", "b3"]
    merged, teams = interleave(a, b, seed=7)
    assert merged == interleave(a, b, seed=7)[0]  # deterministic
    assert len(merged) == len(set(merged)) == len(teams)
    picked = {
        "a": [x for x, t in zip(merged, teams, strict=True) if t == "a"],
        "b": [x for x, t in zip(merged, teams, strict=True) if t == "b"],
    }
    # each team's picks appear in its own ranking's order
    for team, ranking in (("a", a), ("b", b)):
        assert picked[team] == sorted(picked[team], key=ranking.index)
    # team sizes never differ by more than one at any prefix
    for i in range(1, len(teams) + 1):
        assert abs(teams[:i].count("a") - teams[:i].count("b")) <= 1
    seeds = {tuple(interleave(a, b, seed=s)[1][:2]) for s in range(20)}
    assert seeds == {("a", "b"), ("b", "a")}  # the coin decides who picks first


def test_interleaving_credit_and_preference_test() -> None:
    teams = ["a", "b", "a", "b"]
    assert interleaving_credit(teams, [0, 2]) == "a"
    assert interleaving_credit(teams, [1]) == "b"
    assert interleaving_credit(teams, [0, 1]) == "tie"
    assert interleaving_credit(teams, []) == "tie"
    with pytest.raises(ValueError):
        interleaving_credit(teams, [4])
    result = interleaving_test(["b"] * 30 + ["a"] * 12 + ["tie"] * 50)
    assert (result.wins_a, result.wins_b, result.ties) == (12, 30, 50)
    assert result.p_value == pytest.approx(sign_test(30, 12))
    assert result.preferred == "b"
    assert result.preference_b == pytest.approx(30 / 42)
    weak = interleaving_test(["b"] * 6 + ["a"] * 4)
    assert weak.preferred == "none"


def test_interleaving_end_to_end_prefers_the_better_ranking() -> None:
    import random

    rng = random.Random(3)
    good = [f"doc{i}" for i in range(10)]  # relevant docs first
    bad = list(reversed(good))
    relevant = set(good[:3])
    outcomes = []
    for impression in range(200):
        merged, teams = interleave(good, bad, seed=impression)
        clicks = [i for i, doc in enumerate(merged) if doc in relevant and rng.random() < 0.7]
        outcomes.append(interleaving_credit(teams, clicks))
    assert interleaving_test(outcomes).preferred == "a"


def test_two_processes_ingesting_the_same_events_count_each_once(tmp_path: Path) -> None:
    """Overlapping files from two writers at once: no event lost, none counted twice, and the
    aggregates equal those of one writer ingesting both files in turn."""
    records: list[Any] = [resp(f"r{i}", f"s{i // 3}", T0 + i, variant="v") for i in range(200)]
    kinds = ("copy", "thumbs_up", "thumbs_down", "rephrase_retry", "continue", "task_complete")
    events = [ev(kinds[i % 6], f"r{i % 200}", T0 + 300 + i) for i in range(3000)]
    events += [ev("task_complete", None, T0 + 50 + i, session_id=f"s{i}") for i in range(40)]
    files = [
        write_jsonl(tmp_path / "a.jsonl", records[:150] + events[:2000]),
        write_jsonl(tmp_path / "b.jsonl", events[1000:] + records[100:]),
    ]
    db = str(tmp_path / "shared.sqlite3")
    ingest_at_once(db, files)
    with EventStore(tmp_path / "one.sqlite3") as one:
        one.ingest_files(files)
        expected = one.dashboard(window=None, until=T0 + 10_000, by="variant")
        facts = one.query("SELECT * FROM facts ORDER BY skey, response_id")
    with EventStore(db, create=False) as store:
        assert store.counts() == {"responses": 200, "events": 3040, "failures": 0}
        assert store.dashboard(window=None, until=T0 + 10_000, by="variant") == expected
        assert store.query("SELECT * FROM facts ORDER BY skey, response_id") == facts
        assert store.query("SELECT COUNT(*) FROM pending") == [(0,)]


def test_a_corrupted_line_names_file_line_and_field_and_strict_writes_nothing(
    tmp_path: Path,
) -> None:
    good = [resp("r1", "s1", T0)] + [ev("copy", "r1", T0 + i + 0.5) for i in range(50)]
    lines: list[Any] = [*good[:20], '{"type": "copy", "response_id": "r1", "timestamp": "soon"}']
    path = write_jsonl(tmp_path / "e.jsonl", lines + good[20:])
    s = EventStore(tmp_path / "db.sqlite3")
    report = s.ingest_file(path, strict=True)
    assert [str(e) for e in report.errors] == [
        f"{path}:21: field 'timestamp': not an ISO 8601 timestamp or epoch seconds: 'soon'"
    ]
    assert report.rejected_files == (str(path),)
    assert s.counts() == {"responses": 0, "events": 0, "failures": 0}
    assert s.query("SELECT COUNT(*) FROM facts") == [(0,)]
    lenient = s.ingest_file(path)  # without strict the other lines are kept
    assert (lenient.responses_added, lenient.events_added, len(lenient.errors)) == (1, 50, 1)
    assert s.metric("copy_rate", window=None, until=T0 + 100).numerator == 1
