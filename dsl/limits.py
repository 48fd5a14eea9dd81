"""Named limits on what the front end accepts; each one, when exceeded, is a diagnostic."""

#: Largest source text accepted, in UTF-8 bytes.
MAX_SOURCE_BYTES = 1024 * 1024

#: Deepest nesting of a condition or a static value: each pair of parentheses, `not`, unary
#: `-`, call, list, object and operator is a level, but the operators of a flat chain
#: (`a or b or c`, `x + y - z`) are one level together.  An IR condition is counted as the
#: text it formats to.
MAX_NESTING = 100

#: How deep a state declaration's type may nest (`list[list[...]]`): deeper is E003.
MAX_TYPE_DEPTH = 32

#: Deepest a condition's tree may be as the IR stores it, in JSON levels: an operator is one
#: (each operator of a chain too), a literal one, a path, a call or a list two.  JSON tools
#: stop near 250 levels (pydantic-core's serializer), so every accepted IR can be stored and
#: read back; 99 nested calls around a path are exactly 200.
MAX_TREE_DEPTH = 200

#: Syntax errors reported before the parser gives up on a text.
MAX_SYNTAX_ERRORS = 50

#: Characters the error recovery may parse in all.  Each pass resumes where the broken
#: statement starts, so a text is parsed about once however many errors it has; the budget
#: only stops a text that would make the recovery read much of it again.
RECOVERY_BUDGET = 2 * 1024 * 1024

# Bounds on what is shown for one text, and on the work done to say it: none is an error.

#: Diagnostics shown for one text (`flowc check` and the other commands, the API); the rest
#: are counted ("… and 7,980 more errors").
MAX_SHOWN_DIAGNOSTICS = 100

#: Characters of a source line a diagnostic shows: a longer line is cut to this many around
#: the span, with `…` where it is cut.
MAX_SHOWN_LINE = 120

#: Characters of a name, number or string a diagnostic's message quotes: a longer one is
#: cut to its first `MAX_SHOWN_TOKEN`, with `…` and its length ("`xxx…` (1,048,576
#: characters)"), so that a 1 MiB name is not echoed back in every message about it.
MAX_SHOWN_TOKEN = 60

#: Work the did-you-mean suggestions may do for one text, about one unit per character
#: compared (a cell of an edit-distance table is one).  Once it is spent, unknown names get
#: no suggestion (the error is still reported); a name asked about again keeps its answer.
SUGGESTION_BUDGET = 1_000_000

# Conditions: what evaluating them may cost.  Going over one is the run error
# `condition_limit` (on constants, which the compiler folds, the diagnostic E306).

#: Most operators, calls, lists, paths and literals in one condition (E307): each is a step of
#: every evaluation, so this bounds the steps statically.
MAX_CONDITION_SIZE = 10_000

#: The integers a condition's arithmetic may produce: signed 64-bit, which PostgreSQL JSONB
#: and SQLite JSON both hold exactly.  A product is refused before it is computed.
MIN_CONDITION_INT = -(2**63)
MAX_CONDITION_INT = 2**63 - 1

#: Longest string a condition may build with `+`, in characters (refused before building).
MAX_CONDITION_STRING = 1024 * 1024

#: Longest list a condition may build with `+`, in items (refused before building).
MAX_CONDITION_LIST = 100_000

#: Work the conditions of one routing decision (all the arms of a branch) may do on values,
#: in units of roughly the same time (0.1-0.2 us): one per list item or object member that
#: `==`, `in`, `min` or `max` looks at one by one (and `CONTAINER_UNITS` more for each list
#: or object compared), one per `ITEMS_PER_UNIT` items a list
#: search or `+` handles at C speed, one per `CHARACTERS_PER_UNIT` characters of a string
#: compared, searched or built.  Going over it takes some 100 ms at most.
MAX_CONDITION_WORK = 500_000

#: The units of comparing a list or an object, beyond its items (setting it up costs more
#: than looking at an item).
CONTAINER_UNITS = 8

#: List items searched (a scalar `in` a list) or copied (`+`) per unit of work.
ITEMS_PER_UNIT = 4

#: Characters compared, searched or built per unit of work.
CHARACTERS_PER_UNIT = 64
