"""The calc expression language, directly: values, CALC spellings, refusals (nothing from the
wire may reach Python objects or run for long), run-time errors, and properties (hypothesis)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emd_processors import EvaluationError, Expression, ExpressionError


@pytest.mark.parametrize("text, values, expected", [
    ("A + B*2", [1, 2], 5.0),
    ("(A + B) * 2", [1, 2], 6.0),
    ("A / B", [1, 4], 0.25),
    ("A % B", [7, 3], 1.0),
    ("-A ** 2", [3], -9.0),          # ** binds tighter than unary minus, as in Python
    ("A ^ 2", [3], 9.0),             # CALC's power
    ("2 ^ 3 ^ 2", [], 512.0),        # right-associative
    ("A > B", [2, 1], 1.0),          # comparisons give 1 or 0
    ("A <= B", [2, 1], 0.0),
    ("1 < A < 3", [2], 1.0),         # chained, as in Python
    ("A = 2", [2], 1.0),             # CALC's equality
    ("A == 2", [2], 1.0),
    ("A # 2", [2], 0.0),             # CALC's not-equal
    ("A != 2", [3], 1.0),
    ("A && B", [2, 3], 1.0),         # logic gives 1 or 0, not an operand as Python's `and`
    ("A and B", [2, 0], 0.0),
    ("A || B", [0, 3], 1.0),
    ("A or B", [0, 0], 0.0),
    ("!A", [0], 1.0),
    ("not A", [5], 0.0),
    ("!A + 1", [0], 2.0),            # C's precedence: (!A) + 1
    ("not A + 1", [0], 0.0),         # Python's: not (A + 1)
    ("!A == 0", [5], 1.0),
    ("!(A > 1) && B", [0, 1], 1.0),
    ("A > 0 ? sqrt(A) : -1", [4], 2.0),
    ("A > 0 ? sqrt(A) : -1", [-4], -1.0),
    ("A ? B ? 1 : 2 : 3", [1, 0], 2.0),    # nested in the middle
    ("A ? 1 : B ? 2 : 3", [0, 1], 2.0),    # right-associative
    ("(A ? 10 : 20) + 1", [0], 21.0),
    ("max(A, B ? 5 : 6, 3)", [1, 0], 6.0),  # ?: inside function arguments
    ("sqrt(A) if A >= 0 else -1", [-1], -1.0),  # Python's conditional
    ("abs(A) + floor(B) + ceil(B)", [-2, 1.5], 5.0),
    ("min(A, B, 0.5)", [1, 2], 0.5),
    ("max(A)", [3], 3.0),
    ("exp(log(A)) + ln(1) + log10(100)", [5], 7.0),
    ("atan2(1, 1) * 4", [], math.pi),
    ("sin(A)**2 + cos(A)**2", [0.7], 1.0),
    ("tan(0) + asin(0) + acos(1) + atan(0)", [], 0.0),
    ("PI + pi", [], 2 * math.pi),
    ("90 * D2R", [], math.pi / 2),
    ("R2D * pi", [], 180.0),
    ("SQRT(a) + Max(b, 1)", [9, 0], 4.0),   # names are case-insensitive
    ("L", list(range(12)), 11.0),          # all twelve inputs
    ("1e3 + .5 + 2.", [], 1002.5),
    ("A", [True], 1.0),                    # booleans and integers are numbers
    ("inf > A", [1e308], 1.0),
])
def test_values(text, values, expected):
    assert Expression.parse(text).evaluate(values) == pytest.approx(expected)


def test_inputs_used_and_python_spelling():
    expression = Expression.parse("c > 0 ? A^2 : -1")
    assert expression.inputs == ("A", "C")
    assert expression.python == "( A ** 2 ) if ( c > 0 ) else ( - 1 )"
    assert Expression.parse("PI * 2").inputs == ()
    assert math.isnan(Expression.parse("nan").evaluate([]))


@pytest.mark.parametrize("text, message", [
    ("", "the expression is empty"),
    ("   ", "the expression is empty"),
    ("A +", "syntax error in 'A +'"),
    ("A B", "syntax error"),
    ("sqrt(A", "unbalanced parentheses: '(' without ')'"),
    ("A)", "unbalanced parentheses: ')' without '('"),
    ("A ? B", "'?' without its ':'"),
    ("!", "'!' needs an operand"),
    ("A + M", "unknown name 'M'"),
    ("foo", "unknown name 'foo'"),
    ("cosh(A)", "unknown function 'cosh'"),
    ("sin", "sin is a function: call it"),
    ("A(1)", "unknown function 'A'"),
    ("LOG(A)", "LOG is ambiguous"),
    ("atan2(A)", "atan2() takes 2 argument(s), got 1"),
    ("sqrt(A, B)", "sqrt() takes 1 argument(s), got 2"),
    ("min()", "min() takes at least 1 argument(s), got 0"),
    ("True", "only numbers are allowed"),
    # Nothing that reaches Python objects:
    ("__import__('os').system('true')", "unexpected character \"'\""),
    ("__import__(A)", "unknown function '__import__'"),
    ("A.real", "attribute access (.) is not allowed"),
    ("(1).__class__", "attribute access (.) is not allowed"),
    ("lambda: 1", "a lambda is not allowed"),
    ("(x for x in A)", "a comprehension is not allowed"),
    ("[x for x in A]", "unexpected character '['"),
    ("A[0]", "unexpected character '['"),
    ("{}", "unexpected character '{'"),
    ("(A, B)", "a tuple is not allowed"),
    ("A is B", "the comparison 'is' is not allowed"),
    ("A in B", "the comparison 'in' is not allowed"),
    ("A := 1", "assignment (:=) is not supported"),
    ("A; B", "unexpected character ';'"),
    ("A & B", "unexpected character '&'"),
    ("'text'", "unexpected character"),
    ("await A", "the Python construct Await is not allowed"),
    ("sqrt(x=A)", "unknown name 'x'"),  # = is CALC's equality: no keyword arguments either
    # Nothing that runs for long or uses much memory:
    ("9**9**9", "cannot be computed: overflow"),
    ("A + 9^9^9", "cannot be computed: overflow"),
    ("A + 1/0", "cannot be computed: division by zero"),
    ("1" * 400, "too large"),
    ("A" + "+A" * 600, "at most 1000 are allowed"),
    ("(" * 70 + "A" + ")" * 70, "nested too deeply"),
    ("-" * 500 + "A", "nested too deeply"),
    ("!" * 500 + "A", "nested too deeply"),
])
def test_refused(text, message):
    with pytest.raises(ExpressionError) as refused:
        Expression.parse(text)
    assert message in str(refused.value)
    assert len(str(refused.value)) < 300  # messages quote long expressions shortened


@pytest.mark.parametrize("text, values, message", [
    ("A / B", [1, 0], "division by zero in A / B"),
    ("A % B", [1, 0], "division by zero in A % B"),
    ("sqrt(A)", [-1], "math domain error in sqrt(-1)"),
    ("log(A)", [0], "math domain error in log(0)"),
    ("A ^ B", [-8, 0.5], "math domain error in A ** B (-8 ** 0.5)"),  # never a complex number
    ("A ^ B", [0, -1], "math domain error"),
    ("exp(A)", [1000], "overflow in exp(A)"),
    ("A ^ B", [10, 400], "overflow in A ** B"),
    ("A", [10 ** 400], "too large"),
])
def test_evaluation_errors(text, values, message):
    with pytest.raises(EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        Expression.parse(text).evaluate(values)


def test_huge_powers_of_inputs_are_quick():
    """Integer inputs are turned into floats: A ** B overflows at once instead of building a
    number with a billion digits."""
    expression = Expression.parse("A ** B ** C")
    started = time.monotonic()
    with pytest.raises(EvaluationError, match="overflow"):
        expression.evaluate([9, 9, 9])
    with pytest.raises(EvaluationError, match="overflow"):
        expression.evaluate([2, 10 ** 9, 1])
    assert time.monotonic() - started < 0.5


# -- properties -------------------------------------------------------------------------------

NUMBERS = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def arithmetic(draw, depth: int = 0) -> tuple[str, float]:
    """(expression text, its value with A = 2.5, B = -4), built with the value alongside."""
    values = {"A": 2.5, "B": -4.0}
    if depth > 3 or draw(st.booleans()):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(values)))
            return name, values[name]
        number = draw(NUMBERS)
        return repr(abs(number)), abs(number)
    (left, a), (right, b) = draw(arithmetic(depth + 1)), draw(arithmetic(depth + 1))
    kind = draw(st.sampled_from(["+", "-", "*", "max", "?:", "neg"]))
    if kind == "max":
        return f"max({left}, {right})", max(a, b)
    if kind == "?:":
        return f"({left} > {right} ? {left} : {right} - 1)", a if a > b else b - 1
    if kind == "neg":
        return f"-({left})", -a
    return f"({left} {kind} {right})", {"+": a + b, "-": a - b, "*": a * b}[kind]


@given(arithmetic())
@settings(max_examples=300, deadline=None)
def test_arithmetic_matches_the_reference(case):
    text, expected = case
    assert Expression.parse(text).evaluate([2.5, -4.0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)


EXPRESSION_ALPHABET = "ABCL0123456789.e+-*/%^()<>=!#?:,&| sqrtminaxpiPI_[]{}'\"\\;@~$"


@given(st.one_of(st.text(alphabet=EXPRESSION_ALPHABET, max_size=60), st.text(max_size=60)),
       st.lists(st.one_of(st.floats(), st.integers(-2 ** 63, 2 ** 63)), min_size=12, max_size=12))
@settings(max_examples=1500, deadline=None)
def test_any_text_is_parsed_or_refused_cleanly(text, values):
    """Whatever arrives, parse raises ExpressionError or gives an expression, and evaluating
    that raises EvaluationError or gives a float: never another exception."""
    try:
        expression = Expression.parse(text)
    except ExpressionError:
        return
    try:
        assert isinstance(expression.evaluate(values), float)
    except EvaluationError:
        pass
