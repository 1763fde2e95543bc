"""The skills.sh catalog client against a loopback stand-in answering with the real shape.

No skills.sh here (no internet), so a tiny HTTP server answers `GET /api/search` with
the JSON the `skills` npm package reads; the repositories it names are real git
repositories on the loopback git server.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from skills.sources import CatalogEntry, SourceError, resolve_source, search_catalog
from tests.integration.skills_sources.conftest import SourceSettings
from tests.support import GitHttpServer, free_port, skill_md

ENTRIES = [
    {
        "id": "acme/kit/beta",
        "skillId": "beta",
        "name": "beta",
        "installs": 120,
        "source": "acme/kit",
    },
    {
        "id": "acme/kit/alpha",
        "skillId": "alpha",
        "name": "alpha",
        "installs": 98000,
        "source": "acme/kit",
    },
    {
        # the catalog's name differs from the SKILL.md name; its skillId is the folder
        "id": "acme/kit/json-render-gamma",
        "skillId": "gamma",
        "name": "json-render-gamma",
        "installs": 5,
        "source": "acme/kit",
    },
    {"id": "broken-entry-without-name"},
    "not an object",
]


class Catalog:
    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.status = 200
        self.body: Any = None
        catalog = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                catalog.queries.append(query)
                if parts.path != "/api/search":
                    self.send_error(404)
                    return
                term = query.get("q", [""])[0].lower()
                body = catalog.body
                if body is None:
                    hits = [e for e in ENTRIES if not isinstance(e, dict) or term in e["id"]]
                    body = {
                        "query": term,
                        "searchType": "fuzzy",
                        "skills": hits,
                        "count": len(hits),
                        "duration_ms": 3,
                    }
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(catalog.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    server = Catalog()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def published(git_http_server: GitHttpServer) -> str:
    return git_http_server.publish(
        "acme/kit",
        {
            "skills/alpha/SKILL.md": skill_md("alpha"),
            "skills/beta/SKILL.md": skill_md("beta"),
            "skills/gamma/SKILL.md": skill_md("gamma-for-real"),
        },
    )


async def test_search_returns_entries_by_installs(
    catalog: Catalog, source_settings: SourceSettings
) -> None:
    settings = source_settings(skills_catalog_url=catalog.url + "/")
    entries = await search_catalog("acme", settings, owner="Acme")
    assert entries == [
        CatalogEntry("acme/kit/alpha", "alpha", "alpha", "acme/kit", 98000),
        CatalogEntry("acme/kit/beta", "beta", "beta", "acme/kit", 120),
        CatalogEntry("acme/kit/json-render-gamma", "gamma", "json-render-gamma", "acme/kit", 5),
    ]
    assert catalog.queries == [{"q": ["acme"], "limit": ["20"], "owner": ["acme"]}]
    assert entries[0].import_source == "acme/kit@alpha"
    assert entries[0].catalog_source == "catalog:acme/kit/alpha"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"error": "boom"}, "answered HTTP 500"),
        (200, b"<html>not json</html>", "did not answer with a search result"),
        (200, {"results": []}, "did not answer with a search result"),
    ],
)
async def test_catalog_failures_are_clear(
    catalog: Catalog, source_settings: SourceSettings, status: int, body: Any, message: str
) -> None:
    catalog.status, catalog.body = status, body
    with pytest.raises(SourceError) as caught:
        await search_catalog("x", source_settings(skills_catalog_url=catalog.url))
    assert (caught.value.status_code, caught.value.code) == (502, "catalog_unavailable")
    assert message in caught.value.message


async def test_unreachable_catalog_and_bad_queries(source_settings: SourceSettings) -> None:
    settings = source_settings(skills_catalog_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceError) as caught:
        await search_catalog("pdf", settings)
    assert caught.value.code == "catalog_unavailable"
    for query, owner in (("  ", None), ("pdf", "not an owner!")):
        with pytest.raises(SourceError) as caught:
            await search_catalog(query, settings, owner=owner)
        assert (caught.value.status_code, caught.value.code) == (422, "invalid_query")


async def test_a_catalog_entry_imports_from_its_repository(
    catalog: Catalog,
    published: str,
    git_http_server: GitHttpServer,
    source_settings: SourceSettings,
    tmp_path: Path,
) -> None:
    settings = source_settings(skills_catalog_url=catalog.url)
    async with resolve_source("catalog:acme/kit/beta", settings=settings) as fetched:
        assert fetched.kind == "catalog"
        assert fetched.url == git_http_server.url("acme/kit")
        assert fetched.commit == published
        assert [s.name for s in fetched.skills] == ["beta"]
        assert fetched.catalog_entry is not None
        assert fetched.catalog_entry.installs == 120
    assert catalog.queries[-1]["q"] == ["beta"]
    # an entry whose catalog name is not its SKILL.md name is found by its folder
    async with resolve_source("catalog:acme/kit/json-render-gamma", settings=settings) as fetched:
        assert [(s.name, s.subpath) for s in fetched.skills] == [("gamma-for-real", "skills/gamma")]
    # what search returns can be imported as is
    entry = (await search_catalog("alpha", settings))[0]
    async with resolve_source(entry.import_source, settings=settings) as fetched:
        assert [s.name for s in fetched.skills] == ["alpha"]


async def test_an_unknown_catalog_id_is_not_found(
    catalog: Catalog, source_settings: SourceSettings
) -> None:
    settings = source_settings(skills_catalog_url=catalog.url)
    with pytest.raises(SourceError) as caught:
        async with resolve_source("catalog:acme/kit/nope", settings=settings):
            pass
    assert (caught.value.status_code, caught.value.code) == (404, "catalog_entry_not_found")
