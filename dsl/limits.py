"""Named limits on what the front end accepts; each one, when exceeded, is a diagnostic."""

#: Largest source text accepted, in UTF-8 bytes.
MAX_SOURCE_BYTES = 1024 * 1024

#: Deepest nesting of a condition or a static value (operators, parentheses, lists).
MAX_NESTING = 100

#: Syntax errors reported before the parser gives up on a text.
MAX_SYNTAX_ERRORS = 50

#: Characters the error recovery may parse in all: each error re-parses the text, so a large
#: broken text gets fewer passes (a 1 MiB text two, a 40 KiB one all fifty).
RECOVERY_BUDGET = 2 * 1024 * 1024
