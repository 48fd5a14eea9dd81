"""refine_code: exact rewrites, the `import logging` line, untouched bytes, limits, counting."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.runtime.tools.code_review import check_style, refine_code, score_code
from tests.runtime.code_review_support import (
    assert_only_fixed_lines_changed,
    assert_parses,
    refined,
    sample,
)

# --- the rewrites, byte for byte ----------------------------------------------------------

REWRITES = {
    "print, one argument": ("print(x)\n", "import logging\nlogging.info(x)\n"),
    "print, no argument": ("print()\n", 'import logging\nlogging.info("")\n'),
    "print, two arguments": (
        'print("a", b)\n',
        'import logging\nlogging.info("%s %s", "a", b)\n',
    ),
    "print, parenthesised first argument": (
        "print((a), b)\n",
        'import logging\nlogging.info("%s %s", (a), b)\n',
    ),
    "print, blank before the parenthesis": (
        "print (a, b)\n",
        'import logging\nlogging.info ("%s %s", a, b)\n',
    ),
    "print, continued line": (
        "print \\\n  (a, b)\n",
        'import logging\nlogging.info \\\n  ("%s %s", a, b)\n',
    ),
    "print, line break in brackets before the parenthesis": (
        "(print\n  (a, b))\n",
        'import logging\n(logging.info\n  ("%s %s", a, b))\n',
    ),
    "print, nested in print": (
        "print(print(a, b), c)\n",
        'import logging\nlogging.info("%s %s", logging.info("%s %s", a, b), c)\n',
    ),
    "print, over several lines": (
        "print(\n    a,  # first\n    b,\n)\n",
        'import logging\nlogging.info("%s %s", \n    a,  # first\n    b,\n)\n',
    ),
    "print, in a lambda and a comprehension": (
        "f = lambda: [print(x) for x in y]\n",
        "import logging\nf = lambda: [logging.info(x) for x in y]\n",
    ),
    "bare except": (
        "try:\n    pass\nexcept:\n    pass\n",
        "try:\n    pass\nexcept Exception:\n    pass\n",
    ),
    "bare except, blank before the colon": (
        "try:\n    pass\nexcept :\n    pass\n",
        "try:\n    pass\nexcept Exception :\n    pass\n",
    ),
    "== None": ("x == None\n", "x is None\n"),
    "!= None, no blanks": ("x!=None\n", "x is not None\n"),
    "None ==, parenthesised": ("(None)==(x)\n", "(None) is (x)\n"),
    "== None over lines in brackets": ("(x\n   == None)\n", "(x\n   is None)\n"),
    "== None, chained": ("a == None == b\n", "a is None is b\n"),
    "is literal": ("x is 1\n", "x == 1\n"),
    "is not literal": ("x is  not 'a'\n", "x != 'a'\n"),
    "is with a list": ("x is []\n", "x == []\n"),
    "is with a negative number": ("x is -1\n", "x == -1\n"),
    "== None with a literal, which `is None` does not flag": (
        "z = 'a' == None\n",
        "z = 'a' is None\n",
    ),
    "raise NotImplemented": ("raise NotImplemented\n", "raise NotImplementedError\n"),
    "raise NotImplemented(...)": (
        "raise NotImplemented('todo')\n",
        "raise NotImplementedError('todo')\n",
    ),
    "non-ASCII around the fixes": (
        'café = "naïve"; print(café == None)  # ünïcode 日本\n',
        'import logging\ncafé = "naïve"; logging.info(café is None)  # ünïcode 日本\n',
    ),
    "emoji before an operator": ('s = "👋🏽"; t = s is "👋"\n', 's = "👋🏽"; t = s == "👋"\n'),
    "CRLF line ends": ("x = 1\r\nprint(x)\r\n", "import logging\r\nx = 1\r\nlogging.info(x)\r\n"),
    "CR line ends": ("x = 1\rprint(x)\r", "import logging\rx = 1\rlogging.info(x)\r"),
    "tabs": ("if x:\n\tprint(x\t== None)\n", "import logging\nif x:\n\tlogging.info(x\tis None)\n"),
}


@pytest.mark.parametrize(("before", "after"), REWRITES.values(), ids=list(REWRITES))
def test_rewrite(before: str, after: str) -> None:
    assert refined(before) == after
    assert_parses(after)


NOT_REWRITTEN = {
    "print with keywords": "print(a, end='')\nprint(a, file=f)\n",
    "print with star arguments": "print(*a)\nprint(**k)\n",
    "print in an f-string": 'f"{print(1)}"\n',
    "comparison in an f-string": 'f"{x == None}"\n',
    "comment between the operands": "(x  # a == b\n == None)\n",
    "is not split over lines": "(x is\n not 1)\n",
    "logging bound at module level": "logging = None\nprint(1)\n",
    "logging bound as a parameter": "def f(logging):\n    print(1)\n",
    "logging imported in the function": "def f():\n    import logging\n    print(1)\n",
    "logging bound in a class body": "class A:\n    logging = None\n    print(1)\n",
    "docstring shares its line with code": '"""Doc."""; print(1)\n',
    "future import ends in a continuation": "from __future__ import annotations \\\n; print(1)\n",
    "Exception shadowed": "Exception = 1\ntry:\n    pass\nexcept:\n    pass\n",
    "NotImplementedError shadowed": "NotImplementedError = 1\nraise NotImplemented\n",
    "unfixable rules": "from os import *\ndef f(x=[]):\n    eval(x)\n    assert (x, 1)\n",
}


@pytest.mark.parametrize("before", NOT_REWRITTEN.values(), ids=list(NOT_REWRITTEN))
def test_not_rewritten_and_reported_as_not_fixable(before: str) -> None:
    issues = check_style({"code": before})["issues"]
    assert issues and not any(issue["fixable"] for issue in issues)
    update = refine_code({"code": before})
    assert "code" not in update and update["fixes"] == []


# --- where `import logging` goes ----------------------------------------------------------

IMPORTS = {
    "after the docstring": (
        '"""Doc."""\n\nprint(1)\n',
        '"""Doc."""\nimport logging\n\nlogging.info(1)\n',
    ),
    "after a docstring over lines and a comment": (
        '"""Doc\n\nmore.\n"""  # note\nprint(1)\n',
        '"""Doc\n\nmore.\n"""  # note\nimport logging\nlogging.info(1)\n',
    ),
    "after __future__ imports": (
        '"""Doc."""\nfrom __future__ import annotations\nfrom __future__ import division\n'
        "print(1)\n",
        '"""Doc."""\nfrom __future__ import annotations\nfrom __future__ import division\n'
        "import logging\nlogging.info(1)\n",
    ),
    "after a shebang, an encoding line and comments": (
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\n# A comment.\nx = 1\nprint(x)\n",
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\n# A comment.\nimport logging\nx = 1\n"
        "logging.info(x)\n",
    ),
    "before a decorator": (
        "@wrap\ndef f():\n    print(1)\n",
        "import logging\n@wrap\ndef f():\n    logging.info(1)\n",
    ),
    "not again after `import logging`": (
        "import logging\nprint(1)\n",
        "import logging\nlogging.info(1)\n",
    ),
    "not again after `import os, logging.handlers`": (
        "import os, logging.handlers\nprint(1)\n",
        "import os, logging.handlers\nlogging.info(1)\n",
    ),
    "again when the existing import comes later": (
        "print(1)\nimport logging\n",
        "import logging\nlogging.info(1)\nimport logging\n",
    ),
    "when logging is imported under another name": (
        "import logging as log\nprint(1)\n",
        "import logging\nimport logging as log\nlogging.info(1)\n",
    ),
    "once for many prints": (
        "print(1)\ndef f():\n    print(2)\n",
        "import logging\nlogging.info(1)\ndef f():\n    logging.info(2)\n",
    ),
    "not for other fixes": ("x == None\n", "x is None\n"),
}


@pytest.mark.parametrize(("before", "after"), IMPORTS.values(), ids=list(IMPORTS))
def test_import_logging_placement(before: str, after: str) -> None:
    assert refined(before) == after


# --- what refine leaves alone -------------------------------------------------------------


def test_untouched_lines_of_the_prints_sample_stay_byte_identical() -> None:
    before = sample("prints.py")
    update = refine_code({"code": before})
    assert_only_fixed_lines_changed(before, update["code"], {f["line"] for f in update["fixes"]})
    assert update["code"].count("\n") == before.count("\n") + 1


def test_non_ascii_lines_keep_every_byte() -> None:
    before = "# Ünïcödé: 日本語, emoji 🎉\ns = 'ß' * 2; print(s)\nt = 'ø'  # print(t)\n"
    update = refine_code({"code": before})
    assert update["code"] == (
        "# Ünïcödé: 日本語, emoji 🎉\nimport logging\n"
        "s = 'ß' * 2; logging.info(s)\nt = 'ø'  # print(t)\n"
    )
    assert update["fixes"] == [
        {
            "rule": "FLW001",
            "line": 2,
            "column": 14,
            "fix": '`print(a, b)` -> `logging.info("%s %s", a, b)`',
        }
    ]
    assert_only_fixed_lines_changed(before, update["code"], {2})


def test_refine_is_idempotent() -> None:
    clean = sample("clean.py")
    assert refine_code({"code": clean}) == {
        "attempts": 1,
        "fixes": [],
        "refine_note": "nothing refine can fix",
    }
    once = refined(sample("prints.py"))
    assert once != sample("prints.py")
    twice = refine_code({"code": once})
    assert "code" not in twice and twice["fixes"] == []
    assert twice["refine_note"] == "nothing refine can fix; 1 finding left for a person"


def test_code_that_does_not_parse_is_left_alone() -> None:
    update = refine_code({"code": "print(x\n", "attempts": 1})
    assert update == {
        "attempts": 2,
        "fixes": [],
        "refine_note": (
            "nothing changed: the code does not parse (line 1, column 6: '(' was never closed)"
        ),
    }


# --- attempts and max_fixes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "attempts"),
    [
        ({}, 1),
        ({"attempts": 0}, 1),
        ({"attempts": 2}, 3),
        ({"attempts": "2"}, 1),
        ({"attempts": True}, 1),
    ],
)
def test_attempts_count_every_call(state: dict[str, Any], attempts: int) -> None:
    for code in ("x = 1\n", "x = (\n"):
        given: Any = {"code": code, **state}  # `attempts` of any type, as a state may hold
        assert refine_code(given)["attempts"] == attempts


FOUR_FIXES = "x == None\ny != None\ntry:\n    pass\nexcept:\n    pass\nraise NotImplemented\n"


def test_max_fixes_fixes_the_first_findings_only() -> None:
    update = refine_code({"code": FOUR_FIXES}, max_fixes=2)
    assert update["code"] == (
        "x is None\ny is not None\ntry:\n    pass\nexcept:\n    pass\nraise NotImplemented\n"
    )
    assert [(f["rule"], f["line"]) for f in update["fixes"]] == [("FLW006", 1), ("FLW006", 2)]
    assert update["refine_note"] == "fixed 2 of 4 findings refine can fix (max_fixes=2)"
    assert score_code({"code": update["code"]})["score"] == 80


@pytest.mark.parametrize(("max_fixes", "count"), [(0, 0), (-3, 0), (1, 1), (4, 4), (100, 4)])
def test_max_fixes_bounds_the_fixes(max_fixes: int, count: int) -> None:
    update = refine_code({"code": FOUR_FIXES}, max_fixes=max_fixes)
    assert len(update["fixes"]) == count
    assert ("code" in update) == (count > 0)


@pytest.mark.parametrize("max_fixes", ["2", 2.5, None, True])
def test_a_max_fixes_that_is_not_an_integer_counts_as_the_default(max_fixes: Any) -> None:
    assert len(refine_code({"code": "print(1)\n" * 12}, max_fixes=max_fixes)["fixes"]) == 10


def test_one_print_counts_as_one_fix_however_many_edits_it_takes() -> None:
    update = refine_code({"code": "print(a, b)\nprint()\nx == None\n"}, max_fixes=2)
    assert (
        update["code"]
        == 'import logging\nlogging.info("%s %s", a, b)\nlogging.info("")\nx == None\n'
    )
    assert [f["rule"] for f in update["fixes"]] == ["FLW001", "FLW001"]
