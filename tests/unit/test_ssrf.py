import pytest

from gateway.servers.runtimes.base import BackendUnavailable
from gateway.ssrf import check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/mcp",
        "http://localhost/mcp",
        "http://10.1.2.3/mcp",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://0.0.0.0/",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(BackendUnavailable, match="MCPGW_ALLOW_PRIVATE_URLS"):
        await check_url(url, allow_private=False)
    await check_url(url, allow_private=True)


async def test_public_literal_is_allowed_and_unresolvable_hosts_depend_on_mode() -> None:
    await check_url("https://1.1.1.1/mcp", allow_private=False)
    await check_url("https://no-such-host.invalid/mcp", allow_private=False, must_resolve=False)
    with pytest.raises(BackendUnavailable, match="cannot resolve"):
        await check_url("https://no-such-host.invalid/mcp", allow_private=False)
