"""Which code the catalogue's rules find: real builtin calls anywhere, shadowed names never."""

from __future__ import annotations

import textwrap

import pytest

from flowc.runtime.tools.code_review import check_style
from tests.runtime.code_review_support import found, print_lines


def code(text: str) -> str:
    """Test code written indented in the test, dedented."""
    return textwrap.dedent(text).lstrip("\n")


# --- print: what is not a print call ------------------------------------------------------

NOT_PRINT_CALLS = {
    "in a string": 'x = "print(x)"\n',
    "in a docstring": 'def f():\n    """Call print(x) to see."""\n',
    "in a comment": "x = 1  # print(x)\n",
    "method call": "obj.print()\nobj.print(1)\nself.print(2)\n",
    "attribute of a module": "import builtins\nbuiltins.print\n",
    "not called": "p = print\nhandlers = [print]\n",
    "parameter": "def f(print):\n    print(1)\n",
    "keyword-only parameter": "def f(*, print):\n    print(1)\n",
    "star parameters": "def f(*print):\n    print(1)\ndef g(**print):\n    print(2)\n",
    "lambda parameter": "g = lambda print: print(1)\n",
    "module assignment": "import logging\nprint = logging.getLogger().info\nprint(1)\n",
    "module assignment used in a function": "print = len\ndef f():\n    print(1)\n",
    "module assignment after use": "print(1)\nprint = len\n",
    "annotated assignment": "print: object = len\nprint(1)\n",
    "augmented assignment": "print = len\nprint += 1\nprint(1)\n",
    "from import": "from rich import print\nprint(1)\n",
    "from import as": "from log import info as print\nprint(1)\n",
    "import": "import print\nprint(1)\n",
    "import as": "import logging as print\nprint(1)\n",
    "local assignment": "def f():\n    print = len\n    print(1)\n",
    "local assignment after use": "def f():\n    print(1)\n    print = len\n",
    "enclosing function": "def outer():\n    print = len\n    def inner():\n        print(1)\n",
    "nonlocal": (
        "def outer():\n    print = len\n    def inner():\n"
        "        nonlocal print\n        print(1)\n"
    ),
    "global in a function": "def setup():\n    global print\n    print = len\nprint(1)\n",
    "for target": "for print in []:\n    print(1)\n",
    "with target": "with open('f') as print:\n    print(1)\n",
    "except name": "try:\n    pass\nexcept OSError as print:\n    print(1)\n",
    "walrus at module level": "if (print := len):\n    print(1)\n",
    "walrus in a comprehension": "[(print := len) for _ in 'a']\nprint(1)\n",
    "comprehension target": "[print(1) for print in []]\n",
    "function named print": "def print(x):\n    return x\nprint(1)\n",
    "class named print": "class print:\n    pass\nprint(1)\n",
    "class body": "class A:\n    print = len\n    print(1)\n",
    "class body comprehension first iterable": (
        "class A:\n    print = len\n    xs = [y for y in print(1)]\n"
    ),
    "match capture": "match x:\n    case print:\n        print(1)\n",
    "match star": "match x:\n    case [*print]:\n        print(1)\n",
    "match mapping rest": "match x:\n    case {**print}:\n        print(1)\n",
    "match as": "match x:\n    case [1] as print:\n        print(1)\n",
    "del": "del print\nprint(1)\n",
    "async function parameter": "async def f(print):\n    await print(1)\n",
}


@pytest.mark.parametrize("text", NOT_PRINT_CALLS.values(), ids=list(NOT_PRINT_CALLS))
def test_not_a_print_call(text: str) -> None:
    assert print_lines(text) == []


# --- print: real calls, wherever they are -------------------------------------------------

PRINT_CALLS = {
    "module level": ("print(1)\n", [1]),
    "no arguments": ("print()\n", [1]),
    "keywords": ("print(1, end='', sep='-', file=None, flush=True)\n", [1]),
    "starred": ("print(*xs, **kw)\n", [1]),
    "parenthesised callee": ("(print)(1)\n", [1]),
    "function": ("def f():\n    print(1)\n", [2]),
    "nested function": ("def f():\n    def g():\n        print(1)\n", [3]),
    "async function": ("async def f():\n    print(1)\n", [2]),
    "method": ("class A:\n    def m(self):\n        print(1)\n", [3]),
    "lambda body": ("g = lambda: print(1)\n", [1]),
    "lambda default": ("g = lambda x=print(1): x\n", [1]),
    "list comprehension": ("[print(x) for x in 'ab']\n", [1]),
    "comprehension condition": ("[x for x in 'ab' if print(x)]\n", [1]),
    "comprehension iterable": ("[x for x in print(1)]\n", [1]),
    "set and dict comprehensions": (
        "{print(x) for x in 'a'}\n{x: print(x) for x in 'a'}\n",
        [1, 2],
    ),
    "generator": ("sum(print(x) for x in 'ab')\n", [1]),
    "f-string": ('f"{print(1)}"\n', [1]),
    "f-string format spec": ("f'{x:{print(2)}}'\n", [1]),
    "nested f-string": ("f\"{f'{print(1)}'}\"\n", [1]),
    "decorator argument": ("@wrap(print(1))\ndef f():\n    pass\n", [1]),
    "decorator": ("@print\ndef f():\n    pass\n@print\nclass A:\n    pass\n", [1, 4]),
    "default argument": ("def f(x=print(1)):\n    pass\n", [1]),
    "default beside a print parameter": ("def f(print, x=print(1)):\n    pass\n", [1]),
    "annotation": ("def f(x: print(1)) -> print(2):\n    pass\n", [1, 1]),
    "class body": ("class A:\n    print(1)\n", [2]),
    "class base and keyword": ("class A(print(1), metaclass=print(2)):\n    pass\n", [1, 1]),
    "method despite class attribute": (
        "class A:\n    print = len\n    def m(self):\n        print(1)\n",
        [4],
    ),
    "comprehension in class body": (
        "class A:\n    print = len\n    xs = [print(y) for y in 'a']\n",
        [3],
    ),
    "sibling function's parameter": ("def a(print):\n    pass\ndef b():\n    print(1)\n", [4]),
    "global declared, never bound": ("def f():\n    global print\n    print(1)\n", [3]),
    "walrus value": ("if (x := print(1)):\n    pass\n", [1]),
    "with item": ("with print(1):\n    pass\n", [1]),
    "except type": ("try:\n    pass\nexcept print(1):\n    pass\n", [3]),
    "match subject": ("match print(1):\n    case _:\n        pass\n", [1]),
    "nested calls": ("print(print(1))\n", [1, 1]),
    "called result": ("print(1)(2)\n", [1]),
    "argument of a method call": ("obj.print(print(1))\n", [1]),
    "multi-line": ("print(\n    1,\n    2,\n)\n", [1]),
    "after a non-ASCII string": ('s = "日本語 ünïcödé"; print(s)\n', [1]),
    "comprehension variable elsewhere": ("[1 for print in 'a']\nprint(1)\n", [2]),
    "import inside another function": ("def f():\n    import print\ndef g():\n    print(1)\n", [4]),
}


@pytest.mark.parametrize(("text", "lines"), PRINT_CALLS.values(), ids=list(PRINT_CALLS))
def test_a_real_print_call(text: str, lines: list[int]) -> None:
    assert print_lines(text) == lines


def test_print_column_counts_characters_not_bytes() -> None:
    [issue] = check_style({"code": 's = "日本"; print(s)\n'})["issues"]
    assert (issue["line"], issue["column"]) == (1, 11)


# --- the other rules ----------------------------------------------------------------------


def test_eval_and_exec_follow_the_same_scoping() -> None:
    text = code(
        """
        eval("1")
        def f(eval):
            eval("2")
        class A:
            exec = len
            exec("3")
            def m(self):
                exec("4")
        obj.eval("5")
        "eval('6')"
        """
    )
    assert found(text) == [("FLW003", 1), ("FLW003", 8)]


def test_mutable_defaults_name_the_parameter_and_respect_shadowing() -> None:
    text = code(
        """
        def f(a, b=[], /, c={}, *args, d=set(), e=None, **kw):
            pass
        async def g(x=dict()):
            pass
        def h(x=(), y=frozenset(), z=tuple(), w=[1][0]):
            pass
        def k():
            list = tuple
            def inner(x=list()):
                pass
        """
    )
    issues = check_style({"code": text})["issues"]
    assert [(i["rule"], i["line"], i["message"]) for i in issues] == [
        ("FLW005", 1, "mutable default `b=...` is shared by every call: default to None"),
        ("FLW005", 1, "mutable default `c=...` is shared by every call: default to None"),
        ("FLW005", 1, "mutable default `d=...` is shared by every call: default to None"),
        ("FLW005", 3, "mutable default `x=...` is shared by every call: default to None"),
    ]


def test_comparisons_with_none_and_literals_in_chains() -> None:
    text = code(
        """
        a == None == b
        x != None and y is 1
        x is not None and y is ()
        x == "None" or x is "None"
        x is -1
        x is not +2.5
        "a" is None
        """
    )
    assert found(text) == [
        ("FLW006", 1),
        ("FLW006", 1),
        ("FLW006", 2),
        ("FLW008", 2),
        ("FLW008", 3),
        ("FLW008", 4),
        ("FLW008", 5),
        ("FLW008", 6),
    ]


def test_assert_raise_and_except_rules() -> None:
    text = code(
        """
        assert (x, "message")
        assert (x,)
        assert x, ("a", "b")
        try:
            raise NotImplemented
        except:
            raise NotImplementedError
        """
    )
    assert found(text) == [("FLW007", 1), ("FLW007", 2), ("FLW009", 5), ("FLW002", 6)]


def test_a_shadowed_not_implemented_is_not_a_finding() -> None:
    assert found("NotImplemented = ValueError\nraise NotImplemented\n") == []


def test_findings_come_in_source_order() -> None:
    text = "def f(x=[]):\n    print(x == None)\nfrom os import *\n"
    assert found(text) == [("FLW005", 1), ("FLW001", 2), ("FLW006", 2), ("FLW004", 3)]


def test_a_tree_deeper_than_the_recursion_limit_is_walked() -> None:
    # 2,000 left-nested additions parse, but would overflow a recursive ast.NodeVisitor.
    text = "print(print(0)" + " + 1" * 2_000 + ")\n"
    text += "".join("    " * i + "if x:\n" for i in range(90)) + "    " * 90 + "print(2)\n"
    assert found(text) == [("FLW001", 1), ("FLW001", 1), ("FLW001", 92)]


def test_comparison_messages_name_the_replacement() -> None:
    issues = check_style({"code": "x != None\ny is not 1\nz is 'a'\n"})["issues"]
    assert [issue["message"] for issue in issues] == [
        "`!= None`: use `is not None`",
        "`is not` with a literal compares identity: use `!=`",
        "`is` with a literal compares identity: use `==`",
    ]
