"""Essentials: calculator — exact decimal arithmetic, statistics and unit conversion.

Expressions are parsed with :mod:`ast` and evaluated over :class:`decimal.Decimal`
(no ``eval``), so ``0.1 + 0.2`` is ``0.3`` and nothing but arithmetic can run.
"""

from __future__ import annotations

import ast
import decimal
import statistics as stats
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

server = MCPServer(
    "calculator",
    instructions="Exact arithmetic, statistics and unit conversion. Numbers are decimals: "
    "0.1 + 0.2 is exactly 0.3.",
)

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
CONTEXT = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN, Emax=10_000, Emin=-10_000)
MAX_EXPRESSION = 2_000
MAX_EXPONENT = 10_000


def _fmt(value: Decimal) -> str:
    if not value.is_finite():
        raise ToolError("result is not a finite number")
    normal = value.normalize(CONTEXT)
    text = format(normal, "f") if abs(normal.adjusted()) < 40 else str(normal)
    return "0" if text in {"-0", "0E+0"} else text


def _sqrt(x: Decimal) -> Decimal:
    if x < 0:
        raise ToolError("sqrt of a negative number")
    return x.sqrt(CONTEXT)


FUNCTIONS: dict[str, Any] = {
    "abs": abs,
    "sqrt": _sqrt,
    "round": lambda x, n=Decimal(0): x.quantize(Decimal(1).scaleb(-int(n)), context=CONTEXT),
    "min": min,
    "max": max,
    "floor": lambda x: x.to_integral_value(rounding=decimal.ROUND_FLOOR),
    "ceil": lambda x: x.to_integral_value(rounding=decimal.ROUND_CEILING),
}
CONSTANTS = {
    "pi": Decimal("3.14159265358979323846264338327950288419716939937510"),
    "e": Decimal("2.71828182845904523536028747135266249775724709369995"),
}


def _eval(node: ast.AST) -> Decimal:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return Decimal(str(node.value))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval(node.operand)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        op = node.op
        if isinstance(op, ast.Add):
            return CONTEXT.add(left, right)
        if isinstance(op, ast.Sub):
            return CONTEXT.subtract(left, right)
        if isinstance(op, ast.Mult):
            return CONTEXT.multiply(left, right)
        if isinstance(op, ast.Div | ast.FloorDiv | ast.Mod):
            if right == 0:
                raise ToolError("division by zero")
            if isinstance(op, ast.Div):
                return CONTEXT.divide(left, right)
            if isinstance(op, ast.FloorDiv):
                return CONTEXT.divide_int(left, right)
            return CONTEXT.remainder(left, right)
        if isinstance(op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ToolError(f"exponent larger than {MAX_EXPONENT}")
            return CONTEXT.power(left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = FUNCTIONS.get(node.func.id)
        if function is None or node.keywords:
            raise ToolError(f"unknown function {node.func.id!r}; known: {sorted(FUNCTIONS)}")
        return Decimal(function(*(_eval(arg) for arg in node.args)))
    raise ToolError(f"unsupported syntax: {ast.dump(node)[:60]}")


def evaluate_expression(expression: str) -> str:
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"cannot parse expression: {exc.msg}") from None
    try:
        return _fmt(_eval(tree))
    except (decimal.InvalidOperation, decimal.Overflow, OverflowError) as exc:
        raise ToolError(f"arithmetic error: {type(exc).__name__}") from None


@server.tool(annotations=READ_ONLY)
def evaluate(
    expression: Annotated[str, Field(description="e.g. '(1.1 + 2.2) * 3', 'sqrt(2)', '2^10'")],
) -> str:
    """Evaluate an arithmetic expression exactly (decimals, + - * / // % ^, sqrt, abs,
    round(x, n), min, max, floor, ceil, pi, e)."""
    return evaluate_expression(expression)


@server.tool(annotations=READ_ONLY)
def statistics(
    values: Annotated[list[float | int | str], Field(min_length=1, max_length=100_000)],
) -> dict[str, str]:
    """Count, sum, mean, median, min, max, population and sample standard deviation and
    variance, and quartiles of a list of numbers (computed as exact decimals)."""
    try:
        data = [Decimal(str(v)) for v in values]
    except decimal.InvalidOperation:
        raise ToolError("every value must be a number") from None
    with decimal.localcontext(CONTEXT):
        result = {
            "count": str(len(data)),
            "sum": _fmt(sum(data, Decimal(0))),
            "mean": _fmt(stats.mean(data)),
            "median": _fmt(Decimal(stats.median(data))),
            "min": _fmt(min(data)),
            "max": _fmt(max(data)),
            "pstdev": _fmt(stats.pstdev(data)),
            "pvariance": _fmt(stats.pvariance(data)),
        }
        if len(data) > 1:
            result["stdev"] = _fmt(stats.stdev(data))
            result["variance"] = _fmt(stats.variance(data))
            q1, _, q3 = stats.quantiles(data, n=4)
            result.update(q1=_fmt(Decimal(q1)), q3=_fmt(Decimal(q3)))
    return result


# Factors to the base unit of each dimension (exact where the definition is exact).
UNITS: dict[str, dict[str, Decimal]] = {
    "length": {
        "m": Decimal(1),
        "km": Decimal(1000),
        "cm": Decimal("0.01"),
        "mm": Decimal("0.001"),
        "um": Decimal("0.000001"),
        "nm": Decimal("1e-9"),
        "mi": Decimal("1609.344"),
        "yd": Decimal("0.9144"),
        "ft": Decimal("0.3048"),
        "in": Decimal("0.0254"),
        "nmi": Decimal(1852),
    },
    "mass": {
        "kg": Decimal(1),
        "g": Decimal("0.001"),
        "mg": Decimal("0.000001"),
        "t": Decimal(1000),
        "lb": Decimal("0.45359237"),
        "oz": Decimal("0.028349523125"),
    },
    "time": {
        "s": Decimal(1),
        "ms": Decimal("0.001"),
        "us": Decimal("0.000001"),
        "min": Decimal(60),
        "h": Decimal(3600),
        "d": Decimal(86400),
        "wk": Decimal(604800),
    },
    "volume": {
        "l": Decimal(1),
        "ml": Decimal("0.001"),
        "m3": Decimal(1000),
        "gal": Decimal("3.785411784"),
        "qt": Decimal("0.946352946"),
        "floz": Decimal("0.0295735295625"),
    },
    "area": {
        "m2": Decimal(1),
        "km2": Decimal(1_000_000),
        "cm2": Decimal("0.0001"),
        "ha": Decimal(10_000),
        "acre": Decimal("4046.8564224"),
        "ft2": Decimal("0.09290304"),
    },
    "speed": {
        "m/s": Decimal(1),
        "km/h": Decimal(1000) / Decimal(3600),
        "mph": Decimal("0.44704"),
        "kn": Decimal(1852) / Decimal(3600),
    },
    "data": {
        "b": Decimal(1),
        "kb": Decimal(1000),
        "mb": Decimal(10**6),
        "gb": Decimal(10**9),
        "tb": Decimal(10**12),
        "kib": Decimal(1024),
        "mib": Decimal(1024**2),
        "gib": Decimal(1024**3),
        "tib": Decimal(1024**4),
        "bit": Decimal("0.125"),
    },
}
TEMPERATURES = {"c", "f", "k"}


def _to_kelvin(value: Decimal, unit: str) -> Decimal:
    if unit == "c":
        return value + Decimal("273.15")
    if unit == "f":
        return (value - 32) * 5 / 9 + Decimal("273.15")
    return value


def _from_kelvin(value: Decimal, unit: str) -> Decimal:
    if unit == "c":
        return value - Decimal("273.15")
    if unit == "f":
        return (value - Decimal("273.15")) * 9 / 5 + 32
    return value


def convert(value: str, from_unit: str, to_unit: str) -> str:
    source, target = from_unit.strip().lower(), to_unit.strip().lower()
    try:
        amount = Decimal(value)
    except decimal.InvalidOperation:
        raise ToolError(f"{value!r} is not a number") from None
    with decimal.localcontext(CONTEXT):
        if source in TEMPERATURES and target in TEMPERATURES:
            return _fmt(_from_kelvin(_to_kelvin(amount, source), target))
        for dimension, table in UNITS.items():
            if source in table and target in table:
                return _fmt(amount * table[source] / table[target])
            if source in table or target in table:
                known = sorted(table)
                raise ToolError(
                    f"cannot convert {from_unit} to {to_unit}: {dimension} units are {known}"
                )
    raise ToolError(f"unknown unit {from_unit!r}; see the tool description for the list")


@server.tool(
    annotations=READ_ONLY,
    description="Convert between units of length, mass, time, volume, area, speed, data and "
    "temperature. Units: "
    + "; ".join(f"{d}: {', '.join(t)}" for d, t in UNITS.items())
    + "; temperature: c, f, k.",
)
def convert_units(
    value: Annotated[str, Field(description="A decimal number, e.g. '12.5'")],
    from_unit: str,
    to_unit: str,
) -> str:
    return convert(value, from_unit, to_unit)
