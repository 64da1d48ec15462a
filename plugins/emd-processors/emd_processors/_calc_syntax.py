"""EPICS CALC spellings to Python syntax, token by token: the first step of parsing an
expression (see _expression.py, which parses the result with ``ast`` and checks it).

    >>> to_python("A > 0 ? sqrt(A) : -B^2")
    '( sqrt ( A ) ) if ( A > 0 ) else ( - B ** 2 )'

The tokenizer accepts only numbers, names and a fixed set of operators, so quotes, brackets,
braces, semicolons and the like never get as far as Python's parser.
"""

from __future__ import annotations

import re

MAX_DEPTH = 60
"""Deepest nesting accepted (parentheses, operators), so checking and evaluating never recurse
deeply."""

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>\*\*|&&|\|\||==|!=|<=|>=|:=|[-+*/%^()<>=!#?:,.]))"
)
# CALC spellings with a Python equivalent token for token.
_CALC_TOKENS = {"^": "**", "&&": "and", "||": "or", "=": "==", "#": "!="}


class ExpressionError(ValueError):
    """The expression text is not acceptable (syntax, unknown name, not allowed, too long)."""


def to_python(text: str) -> str:
    """`text` in Python syntax; ExpressionError for characters or constructs no expression has."""
    tokens = _translate(_tokenize(text))
    if _deepest(tokens) > MAX_DEPTH:  # e.g. many !, each translated to ( not ... )
        raise ExpressionError(f"{quote(text)} is nested too deeply")
    return " ".join(tokens)


def quote(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, shortened when long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    depth = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].lstrip()
            if not rest:
                break
            raise ExpressionError(f"unexpected character {rest[0]!r} in {quote(text)}")
        token = match.group("number") or match.group("name") or match.group("op")
        if token == ":=":
            raise ExpressionError("assignment (:=) is not supported")
        depth += {"(": 1, ")": -1}.get(token, 0)
        if depth > MAX_DEPTH:
            raise ExpressionError(f"{quote(text)} is nested too deeply")
        tokens.append(token)
        position = match.end()
    return tokens


def _translate(tokens: list[str]) -> list[str]:
    """CALC spellings to Python's, recursively inside parentheses; the conditional last, as
    it binds loosest."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "(":
            end = _closing(tokens, i)
            out += ["(", *_translate_arguments(tokens[i + 1:end]), ")"]
            i = end + 1
        elif token == ")":
            raise ExpressionError("unbalanced parentheses: ')' without '('")
        elif token == "!":
            # C's ! binds tighter than comparisons, Python's not looser: keep C's meaning.
            end = _operand_end(tokens, i + 1)
            out += ["(", "not", *_translate(tokens[i + 1:end]), ")"]
            i = end
        else:
            out.append(_CALC_TOKENS.get(token, token))
            i += 1
    return _conditional(out)


def _translate_arguments(tokens: list[str]) -> list[str]:
    """The inside of parentheses: comma-separated parts (function arguments) one by one."""
    parts: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    out: list[str] = []
    for n, part in enumerate(parts):
        out += ([","] if n else []) + _translate(part)
    return out


def _conditional(tokens: list[str]) -> list[str]:
    """``c ? a : b`` (outside parentheses) to ``(a) if (c) else (b)``; right-associative."""
    question = _top_level_index(tokens, "?")
    if question is None:
        return tokens
    nested = depth = 0
    for i in range(question + 1, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        if tokens[i] == "?" and depth == 0:
            nested += 1
        elif tokens[i] == ":" and depth == 0:
            if nested == 0:
                condition, yes, no = tokens[:question], tokens[question + 1:i], tokens[i + 1:]
                return ["(", *_conditional(yes), ")", "if", "(", *condition, ")",
                        "else", "(", *_conditional(no), ")"]
            nested -= 1
    raise ExpressionError("'?' without its ':' (write c ? a : b)")


def _closing(tokens: list[str], opening: int) -> int:
    depth = 0
    for i in range(opening, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        if depth == 0:
            return i
    raise ExpressionError("unbalanced parentheses: '(' without ')'")


def _operand_end(tokens: list[str], start: int) -> int:
    """End of the operand of a unary ``!`` at `start`: signs, then a number, a name, a call
    or a parenthesized group."""
    i = start
    while i < len(tokens) and tokens[i] in ("!", "-", "+"):
        i += 1
    if i >= len(tokens):
        raise ExpressionError("'!' needs an operand")
    if tokens[i] == "(":
        return _closing(tokens, i) + 1
    if i + 1 < len(tokens) and tokens[i + 1] == "(" and tokens[i][0].isalpha():
        return _closing(tokens, i + 1) + 1
    return i + 1


def _deepest(tokens: list[str]) -> int:
    """The deepest parenthesis nesting in `tokens`."""
    depth = deepest = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        deepest = max(deepest, depth)
    return deepest


def _top_level_index(tokens: list[str], wanted: str) -> int | None:
    depth = 0
    for i, token in enumerate(tokens):
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == wanted and depth == 0:
            return i
    return None


__all__ = ["MAX_DEPTH", "ExpressionError", "quote", "to_python"]
