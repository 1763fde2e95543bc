"""Finding the gateway tools a skill names, for checking them against linked servers."""

from skills.references import ToolReference, tool_references


def test_tool_references_in_allowed_tools_and_body() -> None:
    body = (
        "Use essentials__calculator_evaluate for sums.\n"
        "Claude Code calls it mcp__essentials__git_log.\n"
        "Not ours: myessentials__x, Bash(git:*), other__tool.\n"
        "End of sentence: essentials__documents_html.\n"
        "Again essentials__calculator_evaluate (first mention wins).\n"
    )
    refs = tool_references(
        allowed_tools=["Read", "essentials__git_show", "essentials__*", "Bash(git:*)"],
        allowed_tools_line=4,
        body=body,
        body_line=7,
        servers=["essentials", "everything"],
    )
    assert refs == [
        ToolReference("essentials", "git_show", "allowed-tools", 4),
        ToolReference("essentials", "calculator_evaluate", "body", 7),
        ToolReference("essentials", "git_log", "body", 8),
        ToolReference("essentials", "documents_html", "body", 10),
    ]


def test_no_linked_servers_no_references() -> None:
    assert (
        tool_references(
            allowed_tools=["a__b"], allowed_tools_line=1, body="a__b", body_line=1, servers=[]
        )
        == []
    )
