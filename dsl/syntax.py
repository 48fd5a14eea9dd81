"""grammars/flow.lark -> the tables the code needs of it: keywords, precedence, token names.

The grammar is the specification; this module restates, once, the parts of it that the
builder, the formatter and the syntax errors look up by name, and tests/dsl/test_syntax.py
checks every table here against the grammar itself (its terminals, and the nesting of its
condition rules), so a change to one that the other does not follow fails the tests.
"""

from __future__ import annotations

#: The text of every terminal that matches one fixed text, keywords included.
TOKENS: dict[str, str] = {
    "FLOW": "flow", "SET": "set", "STATE": "state", "NODE": "node", "WITH": "with",
    "BY": "by", "FOR": "for",
    "START": "start", "END": "end", "AND": "and", "OR": "or", "NOT": "not", "IN": "in",
    "TRUE": "true", "FALSE": "false", "NULL": "null",
    "ARROW": "->", "QMARK": "?", "COLON": ":", "SEMICOLON": ";", "EQUALS": "=", "COMMA": ",",
    "DOT": ".", "LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "LBRACE": "{",
    "RBRACE": "}", "EQ": "==", "NE": "!=", "LE": "<=", "GE": ">=", "LT": "<", "GT": ">",
    "PLUS": "+", "MINUS": "-", "STAR": "*", "SLASH": "/", "PERCENT": "%",
}  # fmt: skip

#: Keywords, word -> terminal: the fixed texts that NAME would match too.
KEYWORDS: dict[str, str] = {
    text: name for name, text in TOKENS.items() if text.isidentifier() and text.isascii()
}

#: Keywords only where the grammar takes them and no name (`node a = t with retries = 1`,
#: `state n: int = 0 by sum`); anywhere else the word is a name like any other.
CONTEXTUAL = frozenset(["with", "by"])

#: Words that cannot name a node, a tool, a parameter, a setting, a function, a state key
#: in a declaration, or start a path.
RESERVED = frozenset(KEYWORDS) - CONTEXTUAL

#: How a message names the terminals that match more than one text.
DESCRIBED: dict[str, str] = {
    "NAME": "a name", "INT": "a number", "FLOAT": "a number", "STRING": "a string",
    "_NL": "a new line", "$END": "the end of the text",
}  # fmt: skip

#: How a message names each terminal: fixed texts in backquotes.
SHOWN: dict[str, str] = {name: f"`{text}`" for name, text in TOKENS.items()} | DESCRIBED

#: Precedence levels of the condition operators, loosest first, as the grammar nests its
#: rules (`neg` is unary `-`).  An atom (literal, path, call, list, parenthesised condition)
#: binds tighter than any operator.
LEVELS: dict[str, int] = {
    "or": 1, "and": 2, "not": 3,
    "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4, "not in": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "neg": 7,
}  # fmt: skip
COMPARISON = LEVELS["=="]
ATOM = max(LEVELS.values()) + 1

_TERMINAL_OF = {text: name for name, text in TOKENS.items()}

#: The terminals of the operators (binary or unary).
OPERATOR_TERMINALS = frozenset(
    _TERMINAL_OF[word] for op in LEVELS for word in op.split() if word in _TERMINAL_OF
) | {"MINUS"}

#: The terminals that can start or be a comparison operator (`not in` starts with `not`).
COMPARISON_TERMINALS = frozenset(
    _TERMINAL_OF[op.split()[0]] for op, level in LEVELS.items() if level == COMPARISON
)

#: The keywords a statement starts with; any other statement (a route) starts with a node.
STATEMENT_KEYWORDS = ("flow", "set", "state", "node")

#: What messages summarise: the terminals that show a statement, an expression, a static
#: value or a node name may come next (a subset of what may start one: enough to tell).
STATEMENT_START = frozenset([*(KEYWORDS[word] for word in STATEMENT_KEYWORDS), "NAME"])
EXPRESSION_START = frozenset(["NAME", "INT", "STRING", "LPAR"])
VALUE_START = frozenset(["INT", "STRING", "LSQB", "LBRACE"])
NODE_NAME = frozenset(["NAME", "START", "END"])
