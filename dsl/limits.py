"""Named limits on what the front end accepts; each one, when exceeded, is a diagnostic."""

#: Largest source text accepted, in UTF-8 bytes.
MAX_SOURCE_BYTES = 1024 * 1024

#: Deepest nesting of a condition or a static value (operators, parentheses, lists).
MAX_NESTING = 100

#: Syntax errors reported before the parser gives up on a text.
MAX_SYNTAX_ERRORS = 50
