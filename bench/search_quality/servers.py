"""Real MCP servers the benchmark's catalog is listed from (``collect.py``).

Each entry: the catalog name, the launcher (``npx`` or ``uvx``), the package and its
arguments, and dummy environment values: listing tools needs no real credentials for
most servers (they check them on the first call). Local services stand in where a
server connects at start (PostgreSQL, Redis, MariaDB on 127.0.0.1).
"""

from __future__ import annotations

import tempfile
from typing import NamedTuple

D = "dummy-value-for-listing"
# Scratch places some servers want (a folder to serve, a git repository, a database).
SCRATCH = tempfile.gettempdir()
REPO = f"{SCRATCH}/sq-repo"


class Server(NamedTuple):
    name: str
    launcher: str  # "npx" or "uvx"
    package: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # uvx only: the package's command when it is not named after the package, and
    # extra requirements (servers written for the mcp 1.x SDK need it pinned).
    entry: str | None = None
    with_: tuple[str, ...] = ()


def _e(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, D) for name in names)


MCP = "@modelcontextprotocol/"
MCP1 = "mcp<2"  # for servers written against the 1.x Python SDK
SERVERS: list[Server] = [
    Server("everything", "npx", MCP + "server-everything", ("stdio",)),
    Server("filesystem", "npx", MCP + "server-filesystem", (SCRATCH,)),
    Server("memory", "npx", MCP + "server-memory"),
    Server("sequential-thinking", "npx", MCP + "server-sequential-thinking"),
    Server("github", "npx", MCP + "server-github", env=_e("GITHUB_PERSONAL_ACCESS_TOKEN")),
    Server("gitlab", "npx", MCP + "server-gitlab", env=_e("GITLAB_PERSONAL_ACCESS_TOKEN")),
    Server("slack", "npx", MCP + "server-slack", env=_e("SLACK_BOT_TOKEN", "SLACK_TEAM_ID")),
    Server("google-maps", "npx", MCP + "server-google-maps", env=_e("GOOGLE_MAPS_API_KEY")),
    Server("brave-search", "npx", MCP + "server-brave-search", env=_e("BRAVE_API_KEY")),
    Server("postgres", "npx", MCP + "server-postgres", ("postgresql://postgres@127.0.0.1/test",)),
    Server("redis", "npx", MCP + "server-redis", ("redis://127.0.0.1:6379",)),
    Server("puppeteer", "npx", MCP + "server-puppeteer", env=(("PUPPETEER_SKIP_DOWNLOAD", "1"),)),
    Server(
        "aws-kb-retrieval",
        "npx",
        MCP + "server-aws-kb-retrieval-server",
        env=(*_e("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("AWS_REGION", "us-east-1")),
    ),
    Server("everart", "npx", MCP + "server-everart", env=_e("EVERART_API_KEY")),
    Server("playwright", "npx", "@playwright/mcp"),
    Server("chrome-devtools", "npx", "chrome-devtools-mcp"),
    Server("context7", "npx", "@upstash/context7-mcp"),
    Server("azure-devops", "npx", "@azure-devops/mcp", ("example-org",)),
    Server("supabase", "npx", "@supabase/mcp-server-supabase", ("--access-token", D)),
    Server("notion", "npx", "@notionhq/notion-mcp-server", env=_e("NOTION_TOKEN")),
    Server("circleci", "npx", "@circleci/mcp-server-circleci", env=_e("CIRCLECI_TOKEN")),
    Server("mongodb", "npx", "mongodb-mcp-server"),
    Server("stripe", "npx", "@stripe/mcp", ("--tools=all", "--api-key=sk_test_" + "x" * 24)),
    Server("tavily", "npx", "tavily-mcp", env=_e("TAVILY_API_KEY")),
    Server("gitlab-full", "npx", "@zereight/mcp-gitlab", env=_e("GITLAB_PERSONAL_ACCESS_TOKEN")),
    Server("firecrawl", "npx", "firecrawl-mcp", env=_e("FIRECRAWL_API_KEY")),
    Server("sentry", "npx", "@sentry/mcp-server", ("--access-token", D)),
    Server("launchdarkly", "npx", "@launchdarkly/mcp-server", ("start", "--api-key", D)),
    Server("figma", "npx", "figma-developer-mcp", ("--figma-api-key", D, "--stdio")),
    Server("playwright-ea", "npx", "@executeautomation/playwright-mcp-server"),
    Server(
        "datadog",
        "npx",
        "@winor30/mcp-server-datadog",
        env=_e("DATADOG_API_KEY", "DATADOG_APP_KEY"),
    ),
    Server("chart", "npx", "@antv/mcp-server-chart"),
    Server("hubspot", "npx", "@hubspot/mcp-server", env=_e("PRIVATE_APP_ACCESS_TOKEN")),
    Server("perplexity", "npx", "@perplexity-ai/mcp-server", env=_e("PERPLEXITY_API_KEY")),
    Server("shortcut", "npx", "@shortcut/mcp", env=_e("SHORTCUT_API_TOKEN")),
    Server("drawio", "npx", "@drawio/mcp"),
    Server("mobile", "npx", "@mobilenext/mobile-mcp"),
    Server("currents", "npx", "@currents/mcp", env=_e("CURRENTS_API_KEY")),
    Server("brave", "npx", "@brave/brave-search-mcp-server", env=_e("BRAVE_API_KEY")),
    Server("lark", "npx", "@larksuiteoapi/lark-mcp", ("mcp", "-a", D, "-s", D)),
    Server("code-runner", "npx", "mcp-server-code-runner"),
    Server(
        "jira",
        "npx",
        "@aashari/mcp-server-atlassian-jira",
        env=_e("ATLASSIAN_SITE_NAME", "ATLASSIAN_USER_EMAIL", "ATLASSIAN_API_TOKEN"),
    ),
    Server("exa", "npx", "exa-mcp-server", env=_e("EXA_API_KEY")),
    Server(
        "backlog",
        "npx",
        "backlog-mcp-server",
        env=(("BACKLOG_DOMAIN", "example.backlog.com"), ("BACKLOG_API_KEY", D)),
    ),
    Server(
        "mysql",
        "npx",
        "@benborla29/mcp-server-mysql",
        env=(
            ("MYSQL_HOST", "127.0.0.1"),
            ("MYSQL_USER", "root"),
            ("MYSQL_PASS", ""),
            ("MYSQL_DB", "test"),
        ),
    ),
    Server("shopify-dev", "npx", "@shopify/dev-mcp"),
    Server("ms365", "npx", "@softeria/ms-365-mcp-server", ("--org-mode",)),
    Server("google-docs", "npx", "@a-bonus/google-docs-mcp"),
    Server("monday", "npx", "@mondaydotcomorg/monday-api-mcp", ("-t", D)),
    Server("mapbox", "npx", "@mapbox/mcp-server", env=_e("MAPBOX_ACCESS_TOKEN")),
    Server(
        "argocd",
        "npx",
        "argocd-mcp",
        ("stdio",),
        env=(("ARGOCD_BASE_URL", "https://argocd.example.com"), ("ARGOCD_API_TOKEN", D)),
    ),
    Server("kubernetes", "npx", "mcp-server-kubernetes"),
    Server("brightdata", "npx", "@brightdata/mcp", env=_e("API_TOKEN")),
    Server("mermaid", "npx", "mcp-mermaid"),
    Server("amap", "npx", "@amap/amap-maps-mcp-server", env=_e("AMAP_MAPS_API_KEY")),
    Server("airbnb", "npx", "@openbnb/mcp-server-airbnb"),
    Server("eslint", "npx", "@eslint/mcp"),
    Server("heroku", "npx", "@heroku/mcp-server", env=_e("HEROKU_API_KEY")),
    Server("youtube-transcript", "npx", "@kimtaeyoon83/mcp-server-youtube-transcript"),
    Server(
        "elasticsearch",
        "npx",
        "@elastic/mcp-server-elasticsearch",
        env=(("ES_URL", "http://127.0.0.1:9200"), ("ES_API_KEY", D)),
    ),
    Server("neon", "npx", "@neondatabase/mcp-server-neon", ("start", D)),
    Server("airtable", "npx", "airtable-mcp-server", env=_e("AIRTABLE_API_KEY")),
    Server("desktop-commander", "npx", "@wonderwhy-er/desktop-commander"),
    Server("pinecone", "npx", "@pinecone-database/mcp", env=_e("PINECONE_API_KEY")),
    Server("paypal", "npx", "@paypal/mcp", ("--tools=all",), env=_e("PAYPAL_ACCESS_TOKEN")),
    Server(
        "contentful",
        "npx",
        "@contentful/mcp-server",
        env=_e("CONTENTFUL_MANAGEMENT_ACCESS_TOKEN", "SPACE_ID"),
    ),
    Server("line", "npx", "@line/line-bot-mcp-server", env=_e("CHANNEL_ACCESS_TOKEN")),
    Server(
        "browserbase",
        "npx",
        "@browserbasehq/mcp-server-browserbase",
        env=_e("BROWSERBASE_API_KEY", "BROWSERBASE_PROJECT_ID"),
    ),
    Server("e2b", "npx", "@e2b/mcp-server", env=_e("E2B_API_KEY")),
    Server("twilio", "npx", "@twilio-alpha/mcp", ("ACxxxxxxxx/SKxxxxxxxx:secret",)),
    Server("todoist", "npx", "@doist/todoist-ai", env=_e("TODOIST_API_KEY")),
    Server("instantdb", "npx", "@instantdb/mcp", ("--token", D)),
    # PyPI (uvx)
    Server("time", "uvx", "mcp-server-time"),
    Server("git", "uvx", "mcp-server-git", ("--repository", REPO)),
    Server("fetch", "uvx", "mcp-server-fetch"),
    Server("sqlite", "uvx", "mcp-server-sqlite", ("--db-path", f"{SCRATCH}/sq.db"), with_=(MCP1,)),
    Server(
        "atlassian",
        "uvx",
        "mcp-atlassian",
        env=(
            ("JIRA_URL", "https://example.atlassian.net"),
            ("JIRA_USERNAME", "a@b.c"),
            ("JIRA_API_TOKEN", D),
            ("CONFLUENCE_URL", "https://example.atlassian.net/wiki"),
            ("CONFLUENCE_USERNAME", "a@b.c"),
            ("CONFLUENCE_API_TOKEN", D),
        ),
    ),
    Server("aws-docs", "uvx", "awslabs.aws-documentation-mcp-server"),
    Server("aws-cloudwatch", "uvx", "awslabs.cloudwatch-mcp-server"),
    Server("aws-dynamodb", "uvx", "awslabs.dynamodb-mcp-server"),
    Server("aws-cost-explorer", "uvx", "awslabs.cost-explorer-mcp-server"),
    Server(
        "qdrant",
        "uvx",
        "mcp-server-qdrant",
        env=(("QDRANT_URL", "http://127.0.0.1:6333"), ("COLLECTION_NAME", "notes")),
    ),
    Server("clickhouse", "uvx", "mcp-clickhouse", env=(("CLICKHOUSE_HOST", "127.0.0.1"),)),
    Server("chroma", "uvx", "chroma-mcp"),
    Server("neo4j", "uvx", "mcp-neo4j-cypher"),
    Server("arxiv", "uvx", "arxiv-mcp-server"),
    Server("markitdown", "uvx", "markitdown-mcp"),
    Server("elevenlabs", "uvx", "elevenlabs-mcp", env=_e("ELEVENLABS_API_KEY")),
    Server("excel", "uvx", "excel-mcp-server", ("stdio",)),
    Server("word", "uvx", "office-word-mcp-server", entry="word_mcp_server"),
    Server("powerpoint", "uvx", "office-powerpoint-mcp-server", entry="ppt_mcp_server"),
    Server("google-sheets", "uvx", "mcp-google-sheets", with_=(MCP1,)),
    Server("duckduckgo", "uvx", "duckduckgo-mcp-server"),
    Server("zotero", "uvx", "zotero-mcp"),
    Server("google-workspace", "uvx", "workspace-mcp"),
    Server("obsidian", "uvx", "mcp-obsidian", env=_e("OBSIDIAN_API_KEY")),
    Server("blender", "uvx", "blender-mcp"),
    Server("calculator", "uvx", "mcp-server-calculator"),
    Server("sentry-py", "uvx", "mcp-server-sentry", ("--auth-token", D), with_=("httpx", MCP1)),
    Server("pandoc", "uvx", "mcp-pandoc"),
    Server("bigquery", "uvx", "mcp-server-bigquery", ("--project", "demo", "--location", "US")),
    Server(
        "snowflake",
        "uvx",
        "mcp-snowflake-server",
        env=_e("SNOWFLAKE_USER", "SNOWFLAKE_PASSWORD", "SNOWFLAKE_ACCOUNT"),
        entry="mcp_snowflake_server",
    ),
    Server("jupyter", "uvx", "jupyter-mcp-server"),
    Server("pagerduty", "uvx", "pagerduty-mcp", env=_e("PAGERDUTY_USER_API_KEY")),
    Server("dbt", "uvx", "dbt-mcp"),
    Server("motherduck", "uvx", "mcp-server-motherduck", ("--db-path", ":memory:")),
    Server("hass", "uvx", "hass-mcp", env=(("HA_URL", "http://127.0.0.1:8123"), ("HA_TOKEN", D))),
]
