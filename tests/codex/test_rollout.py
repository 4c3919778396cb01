"""Layer 1: ``trio_codex.codex.rollout``: a thread's token totals, read from Codex's rollout
record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from trio_codex.codex.rollout import (
    ThreadRecord,
    find_rollout,
    last_totals,
    read_thread_record,
    read_thread_totals,
)
from trio_codex.run.events import Usage

THREAD = "01a2143b-1fd9-76e0-9757-41798741afc5"


def _token_count(total: int) -> str:
    usage = {
        "input_tokens": total,
        "cached_input_tokens": 5,
        "cache_write_input_tokens": 0,
        "output_tokens": total // 10,
        "reasoning_output_tokens": 1,
    }
    return json.dumps(
        {
            "type": "event_msg",
            "payload": {"type": "token_count", "info": {"total_token_usage": usage}},
        }
    )


def _rollout(home: Path, thread: str, lines: list[str], day: str = "2026/11/25") -> Path:
    directory = home / "sessions" / day
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rollout-2026-11-25T19-42-28-{thread}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rollout_totals_are_the_last_token_count(tmp_path: Path) -> None:
    """The last token_count with totals wins; info: null records and other lines are skipped."""
    null_info = json.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": None}})
    _rollout(
        tmp_path,
        THREAD,
        ['{"type":"session_meta"}', _token_count(100), "not json", _token_count(300), null_info],
    )
    assert read_thread_totals(tmp_path, THREAD) == Usage(300, 5, 30, 1)


def test_rollout_is_found_outside_its_uuid_day_and_read_across_blocks(tmp_path: Path) -> None:
    """A rollout in another day directory is still found; a huge tail is read backwards."""
    padding = json.dumps({"type": "response_item", "text": "x" * 300_000})
    path = _rollout(tmp_path, THREAD, [_token_count(42), padding, padding], day="2020/01/01")
    assert find_rollout(tmp_path, THREAD) == path
    assert last_totals(path) == Usage(42, 5, 4, 1)
    assert last_totals(path, limit=1024) is None  # the read limit holds


def test_rollout_lookup_refuses_odd_ids_and_missing_files(tmp_path: Path) -> None:
    """Non-UUID thread ids (glob patterns included) and missing records give None."""
    _rollout(tmp_path, THREAD, [_token_count(1)])
    assert read_thread_totals(tmp_path, "*") is None
    assert read_thread_totals(tmp_path, "thread-1") is None
    assert read_thread_totals(tmp_path, str(uuid.uuid4())) is None
    assert read_thread_totals(tmp_path / "nowhere", THREAD) is None


def _task_started(turn: str) -> str:
    return json.dumps({"type": "event_msg", "payload": {"type": "task_started", "turn_id": turn}})


def test_rollout_latest_turn_is_the_last_task_started(tmp_path: Path) -> None:
    """The latest turn is the last one begun (a running turn counts), found however far back
    its record is; totals still come from the last token_count."""
    filler = [json.dumps({"type": "response_item", "payload": {"text": "x" * 1000}})] * 600
    _rollout(
        tmp_path,
        THREAD,
        [_task_started("turn-1"), _token_count(100), _task_started("turn-2"), *filler],
    )
    assert read_thread_record(tmp_path, THREAD) == ThreadRecord(
        Usage(100, 5, 10, 1), last_turn_id="turn-2"
    )
    _rollout(tmp_path, THREAD, ['{"type":"session_meta"}'])
    assert read_thread_record(tmp_path, THREAD) == ThreadRecord(None, None)
    assert read_thread_record(tmp_path, str(uuid.uuid4())) is None
