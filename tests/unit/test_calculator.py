import pytest
from mcp.server.mcpserver.exceptions import ToolError

from gateway.servers.essentials.calculator import convert, evaluate_expression, statistics


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0.1 + 0.2", "0.3"),
        ("(1.1 + 2.2) * 3", "9.9"),
        ("2^10", "1024"),
        ("10 / 4", "2.5"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("-3 + +5", "2"),
        ("sqrt(16)", "4"),
        ("round(2.675, 2)", "2.68"),
        ("max(1, 9, 3) - min(4, 2)", "7"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("1 / 3", "0.33333333333333333333333333333333333333333333333333"),
    ],
)
def test_exact_arithmetic(expression: str, expected: str) -> None:
    assert evaluate_expression(expression) == expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("1 / 0", "division by zero"),
        ("__import__('os')", "unknown function"),
        ("open('x')", "unknown function"),
        ("a.b", "unsupported"),
        ("2 ** 100000", "exponent"),
        ("1 +", "cannot parse"),
        ("sqrt(-1)", "negative"),
        ("'text'", "unsupported"),
        ("x" * 3000, "longer than"),
    ],
)
def test_bad_expressions_are_tool_errors(expression: str, fragment: str) -> None:
    with pytest.raises(ToolError, match=fragment):
        evaluate_expression(expression)


def test_statistics() -> None:
    result = statistics([1, 2, 3, 4, "5.5"])
    assert result["count"] == "5"
    assert result["sum"] == "15.5"
    assert result["mean"] == "3.1"
    assert result["median"] == "3"
    assert result["min"] == "1" and result["max"] == "5.5"
    assert "stdev" in result and "q1" in result
    assert statistics([7])["pstdev"] == "0"
    with pytest.raises(ToolError):
        statistics(["seven"])


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        ("1", "mi", "km", "1.609344"),
        ("100", "c", "f", "212"),
        ("32", "f", "c", "0"),
        ("0", "k", "c", "-273.15"),
        ("1", "gib", "mib", "1024"),
        ("2.5", "h", "min", "150"),
        ("1", "lb", "g", "453.59237"),
    ],
)
def test_unit_conversion(value: str, source: str, target: str, expected: str) -> None:
    assert convert(value, source, target) == expected


def test_unit_conversion_errors() -> None:
    with pytest.raises(ToolError, match="cannot convert"):
        convert("1", "km", "kg")
    with pytest.raises(ToolError, match="unknown unit"):
        convert("1", "parsec", "furlong")
    with pytest.raises(ToolError, match="not a number"):
        convert("abc", "m", "km")
