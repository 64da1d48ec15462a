"""The calc expression language: parse text once, check it, evaluate it safely many times.

Expressions come from CONFIG puts, i.e. from the network, so they are never given to Python's
``eval`` or ``compile``. Instead the text is tokenized and its EPICS CALC spellings are
translated to Python's (``^`` to ``**``, ``&&`` to ``and``, ``c ? a : b`` to ``a if c else b``
...: _calc_syntax.py), the result is parsed with ``ast.parse(mode="eval")``, and every node of
the tree is checked against a short whitelist (here). Evaluation walks that checked tree with a small interpreter, in
floating point only, so no expression can reach Python objects, and none can build huge
integers (``9**9**9`` overflows at once instead of running for hours).

    >>> expression = Expression.parse("A > 0 ? sqrt(A) : -1")
    >>> expression.evaluate([4.0])
    2.0
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._calc_syntax import MAX_DEPTH, ExpressionError, quote, to_python

INPUT_NAMES = "ABCDEFGHIJKL"
"""The input variables, bound in this order to the PVs of CONFIG ``inputs`` (CALC's INPA..INPL)."""
MAX_LENGTH = 1000
"""Longest expression text accepted (characters)."""

CONSTANTS: dict[str, float] = {
    "pi": math.pi,
    "d2r": math.pi / 180,  # degrees to radians, as in CALC
    "r2d": 180 / math.pi,
    "inf": math.inf,
    "nan": math.nan,
}


@dataclass(frozen=True)
class _Function:
    call: Callable[..., float]
    min_args: int
    max_args: int  # -1: any number


FUNCTIONS: dict[str, _Function] = {
    "abs": _Function(abs, 1, 1),
    "sqrt": _Function(math.sqrt, 1, 1),
    "exp": _Function(math.exp, 1, 1),
    "log": _Function(math.log, 1, 1),  # natural logarithm, as Python's math.log
    "ln": _Function(math.log, 1, 1),
    "log10": _Function(math.log10, 1, 1),
    "sin": _Function(math.sin, 1, 1),
    "cos": _Function(math.cos, 1, 1),
    "tan": _Function(math.tan, 1, 1),
    "asin": _Function(math.asin, 1, 1),
    "acos": _Function(math.acos, 1, 1),
    "atan": _Function(math.atan, 1, 1),
    "atan2": _Function(math.atan2, 2, 2),  # atan2(y, x), as in Python and C
    "floor": _Function(lambda x: float(math.floor(x)), 1, 1),
    "ceil": _Function(lambda x: float(math.ceil(x)), 1, 1),
    "min": _Function(lambda *xs: min(xs), 1, -1),
    "max": _Function(lambda *xs: max(xs), 1, -1),
}
"""Functions by lower-case name; names are case-insensitive (``SQRT(A)`` works)."""

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,  # Python's modulo: the result has the sign of the divisor
    ast.Pow: math.pow,  # never complex, never an integer power
}
_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_UNARY = (ast.USub, ast.UAdd, ast.Not)

# What a refused node is called in messages.
_NOT_ALLOWED = {
    ast.Attribute: "attribute access (.)",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Subscript: "a subscript ([])",
    ast.NamedExpr: "assignment (:=)",
    ast.Starred: "a starred argument",
    ast.Tuple: "a tuple",
}
_COMPARISON_NAMES = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


class EvaluationError(ArithmeticError):
    """Evaluating a valid expression failed for these input values (division by zero, a math
    domain error such as sqrt(-1), overflow)."""


class Expression:
    """A parsed and checked expression; `evaluate` it with one value per input letter."""

    def __init__(self, text: str, python: str, tree: ast.Expression, inputs: tuple[str, ...]) -> None:
        self.text = text
        """The expression as given."""
        self.python = python
        """The same expression in Python syntax, as it was parsed (for messages and docs)."""
        self.inputs = inputs
        """The input letters the expression uses, in order (e.g. ``("A", "C")``)."""
        self._tree = tree

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse and check `text`; raises ExpressionError saying what is wrong."""
        if not text.strip():
            raise ExpressionError("the expression is empty")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
        try:
            python = to_python(text)
            tree = ast.parse(python, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"syntax error in {quote(text)}: {exc.msg}") from None
        except (RecursionError, MemoryError):
            raise ExpressionError(f"{quote(text)} is nested too deeply") from None
        _check_depth(tree)
        checker = _Checker()
        if checker.check(tree.body):
            _fold(tree.body)  # a constant expression: make sure it can be computed at all
        inputs = tuple(sorted(checker.inputs))
        return cls(text, python, tree, inputs)

    def evaluate(self, values: Sequence[float]) -> float:
        """The value of the expression with ``values[0]`` as A, ``values[1]`` as B, ...;
        raises EvaluationError for a division by zero, a math domain error or an overflow."""
        needed = INPUT_NAMES.index(self.inputs[-1]) + 1 if self.inputs else 0
        if len(values) < needed:
            raise ValueError(f"{self.text!r} uses {self.inputs[-1]}: give at least {needed} values")
        try:
            numbers = [float(value) for value in values]  # floats only, also for int inputs
        except OverflowError:
            raise EvaluationError("an input is too large for a floating point number") from None
        return _evaluate(self._tree.body, numbers)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


# -- checking -------------------------------------------------------------------------------------


def _check_depth(tree: ast.AST) -> None:
    """Refuse deep trees before anything recurses into them (``-------...A``)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 2 * MAX_DEPTH:
            raise ExpressionError("the expression is nested too deeply")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Checker:
    """Walks a parsed tree, refuses every node outside the whitelist, collects the inputs used,
    and computes constant parts once, so ``1/0`` or ``9**9**9`` are refused up front."""

    def __init__(self) -> None:
        self.inputs: set[str] = set()

    def check(self, node: ast.AST) -> bool:
        """Check `node`; True when it is constant (uses no input)."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"only numbers are allowed as literals, not {node.value!r}")
            return True
        if isinstance(node, ast.Name):
            return self._check_name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
            children = [node.operand]
        elif isinstance(node, ast.BoolOp):
            children = list(node.values)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.IfExp):
            children = [node.test, node.body, node.orelse]
        elif isinstance(node, ast.Call):
            children = self._check_call(node)
        else:
            raise ExpressionError(f"{_describe(node)} is not allowed in an expression")
        constant = [self.check(child) for child in children]
        if all(constant):
            return True
        for child, is_constant in zip(children, constant):
            if is_constant:
                _fold(child)
        return False

    def _check_name(self, name: str) -> bool:
        lower = name.lower()
        if lower in CONSTANTS:
            return True
        if len(name) == 1 and name.upper() in INPUT_NAMES:
            self.inputs.add(name.upper())
            return False
        if lower in FUNCTIONS:
            raise ExpressionError(f"{name} is a function: call it, as in {name}(A)")
        raise ExpressionError(f"unknown name {name!r} (inputs are A to L; constants: "
                              f"{', '.join(CONSTANTS)})")

    def _check_call(self, node: ast.Call) -> list[ast.expr]:
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(f"{_describe(node.func)} is not allowed in an expression")
        name = node.func.id
        if name == "LOG":  # as CALC writes it: refuse rather than silently compute another log
            raise ExpressionError("LOG is ambiguous: EPICS CALC's LOG is base 10, here log is the "
                                  "natural logarithm; write log10(...) or ln(...)")
        function = FUNCTIONS.get(name.lower())
        if function is None:
            raise ExpressionError(f"unknown function {name!r} (known: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise ExpressionError(f"{name}() takes no keyword arguments")
        count = len(node.args)
        if count < function.min_args or (function.max_args >= 0 and count > function.max_args):
            wanted = (f"{function.min_args}" if function.min_args == function.max_args
                      else f"at least {function.min_args}")
            raise ExpressionError(f"{name}() takes {wanted} argument(s), got {count}")
        return list(node.args)


def _describe(node: ast.AST) -> str:
    for kind, description in _NOT_ALLOWED.items():
        if isinstance(node, kind):
            return description
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        refused = [_COMPARISON_NAMES.get(type(op), type(op).__name__) for op in node.ops
                   if type(op) not in _COMPARE]
        return f"the comparison {refused[0]!r}"
    return f"the Python construct {type(node).__name__}"


def _fold(node: ast.expr) -> None:
    """Compute a constant part now; refuse the expression if it cannot be computed."""
    try:
        _evaluate(node, ())
    except EvaluationError as exc:
        raise ExpressionError(f"{quote(ast.unparse(node))} cannot be computed: {exc}") from None


# -- evaluation -----------------------------------------------------------------------------------


def _evaluate(node: ast.expr, values: Sequence[float]) -> float:
    """The value of a checked node. Comparisons and logic give 1.0 or 0.0, as in CALC."""
    if isinstance(node, ast.Constant):
        return _literal(node.value)
    if isinstance(node, ast.Name):
        lower = node.id.lower()
        if lower in CONSTANTS:
            return CONSTANTS[lower]
        return values[INPUT_NAMES.index(node.id.upper())]
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, values), _evaluate(node.right, values)
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise EvaluationError(f"division by zero in {ast.unparse(node)}") from None
        except OverflowError:
            raise EvaluationError(f"overflow in {ast.unparse(node)}") from None
        except ValueError:  # math.pow(-8, 0.5), math.pow(0, -1)
            raise EvaluationError(f"math domain error in {ast.unparse(node)} "
                                  f"({left:g} ** {right:g})") from None
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        if isinstance(node.op, ast.Not):
            return float(not operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BoolOp):  # short-circuit, as in C
        if isinstance(node.op, ast.And):
            return float(all(_evaluate(value, values) for value in node.values))
        return float(any(_evaluate(value, values) for value in node.values))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, comparator in zip(node.ops, node.comparators):
            right = _evaluate(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return 0.0
            left = right
        return 1.0
    if isinstance(node, ast.IfExp):
        chosen = node.body if _evaluate(node.test, values) else node.orelse
        return _evaluate(chosen, values)
    if isinstance(node, ast.Call):
        name = node.func.id.lower()  # type: ignore[attr-defined]  (checked: a Name)
        arguments = [_evaluate(argument, values) for argument in node.args]
        try:
            return float(FUNCTIONS[name].call(*arguments))
        except ValueError:
            shown = ", ".join(f"{a:g}" for a in arguments)
            raise EvaluationError(f"math domain error in {name}({shown})") from None
        except OverflowError:
            raise EvaluationError(f"overflow in {ast.unparse(node)}") from None
    raise ExpressionError(f"{_describe(node)} is not allowed in an expression")  # never: checked


def _literal(value: float | int) -> float:
    """A number literal as a float (ints too: all arithmetic is floating point)."""
    try:
        return float(value)
    except OverflowError:  # an integer literal beyond the float range
        raise EvaluationError(f"the number {quote(str(value))} is too large") from None


__all__ = ["CONSTANTS", "FUNCTIONS", "INPUT_NAMES", "MAX_DEPTH", "MAX_LENGTH", "EvaluationError",
           "Expression", "ExpressionError"]
