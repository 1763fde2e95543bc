import pytest
from mcp.shared.exceptions import MCPError

from gateway.mcp.pages import encode, page


def test_pages_cover_every_item_once() -> None:
    items = list(range(23))
    seen, cursor = [], None
    while True:
        chunk, cursor = page(items, cursor, version=7, size=5)
        seen += chunk
        if cursor is None:
            break
    assert seen == items


@pytest.mark.parametrize("cursor", ["garbage", "e30", encode(6, 5), encode(7, -3)])
def test_stale_or_forged_cursors_are_invalid_params(cursor: str) -> None:
    with pytest.raises(MCPError) as info:
        page(list(range(10)), cursor, version=7, size=5)
    assert info.value.error.code == -32602
