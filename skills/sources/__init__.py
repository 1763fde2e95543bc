"""Where skills are imported from: git repositories, local folders and the skills.sh catalog.

Sources use the grammar of ``npx skills add`` (``owner/repo``, ``owner/repo/sub/path``,
``owner/repo@skill``, tree URLs, GitLab and Azure URLs, any git URL, a local path) plus
``catalog:<id>``; skills are discovered in the checkout the way that tool does::

    async with resolve_source("anthropics/skills@pdf", settings=settings) as fetched:
        fetched.commit, [s.root for s in fetched.skills]   # gone when the block ends
"""

from skills.sources.catalog import CatalogEntry, lookup_catalog, search_catalog
from skills.sources.discovery import DiscoveredSkill, discover_skills
from skills.sources.errors import (
    SkillNotFound,
    SourceError,
    SourceNotFound,
    SourceUnavailable,
    mask_credentials,
    strip_credentials,
)
from skills.sources.grammar import ParsedSource, parse_source
from skills.sources.resolve import FetchedSource, LocalImportDisabled, resolve_source

__all__ = [
    "CatalogEntry",
    "DiscoveredSkill",
    "FetchedSource",
    "LocalImportDisabled",
    "ParsedSource",
    "SkillNotFound",
    "SourceError",
    "SourceNotFound",
    "SourceUnavailable",
    "discover_skills",
    "lookup_catalog",
    "mask_credentials",
    "parse_source",
    "resolve_source",
    "search_catalog",
    "strip_credentials",
]
