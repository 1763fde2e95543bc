"""Write-behind (gateway/batching.py): nothing noted is lost when a write fails."""

from __future__ import annotations

from gateway.batching import WriteBehind


def _added(earlier: int, later: int) -> int:
    return earlier + later


async def test_notes_merge_and_go_in_one_batch() -> None:
    written: list[dict[str, int]] = []

    async def write(batch: dict[str, int]) -> None:
        written.append(dict(batch))

    rows = WriteBehind("counts", write, _added)
    rows.note("a", 1)
    rows.note("a", 2)
    rows.note("b", 5)
    assert rows.get("a") == 3 and len(rows) == 2
    await rows.flush()
    await rows.flush()  # nothing pending: no write
    assert written == [{"a": 3, "b": 5}]
    assert rows.get("a") is None


async def test_a_failed_write_is_merged_with_what_came_meanwhile() -> None:
    fail = True
    written: list[dict[str, int]] = []

    async def write(batch: dict[str, int]) -> None:
        if fail:
            rows.note("a", 10)  # noted while the write is under way
            raise OSError("database down")
        written.append(dict(batch))

    rows = WriteBehind("counts", write, _added)
    rows.note("a", 1)
    rows.note("b", 2)
    await rows.flush()
    assert written == [] and rows.get("a") == 11 and rows.get("b") == 2
    fail = False
    await rows.flush()
    assert written == [{"a": 11, "b": 2}]
    assert list(written[0]) == ["a", "b"]  # the failed batch's order first


async def test_the_default_merge_keeps_the_later_value_and_forget_drops() -> None:
    async def write(batch: dict[str, str]) -> None:
        raise OSError("down")

    rows: WriteBehind[str, str] = WriteBehind("times", write)
    rows.note("k", "10:00")
    rows.note("k", "10:05")
    await rows.flush()  # fails: kept
    assert rows.get("k") == "10:05"
    rows.forget("k")
    assert len(rows) == 0
