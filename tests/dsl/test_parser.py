"""Every construct of the Flow language parses to the AST it means (dsl.parse)."""

from __future__ import annotations

import pytest

from flowc.dsl import Span, ast, parse

# ------------------------------------------------------------------ AST shorthands


def n(text: str) -> ast.Name:
    return ast.Name(text)


def path(*parts: str | int) -> ast.PathExpr:
    return ast.PathExpr(parts)


def num(value: int) -> ast.Literal:
    return ast.Literal("int", value)


def text(value: str) -> ast.Literal:
    return ast.Literal("string", value)


def binary(op: ast.BinaryOp, left: ast.Expr, right: ast.Expr) -> ast.Binary:
    return ast.Binary(op, left, right)


def chain(*names: str) -> ast.Route:
    return ast.Route(tuple(n(name) for name in names), None)


def branch(source: str, *arms: tuple[ast.Expr, str], otherwise: str) -> ast.Route:
    taken = tuple(ast.Arm(condition, n(target)) for condition, target in arms)
    return ast.Route((n(source),), ast.Branch(taken, n(otherwise)))


def flow(*statements: ast.Statement) -> ast.Flow:
    return ast.Flow(statements)


def condition(written: str) -> ast.Expr:
    """The condition of `a ? <written> -> b : c`."""
    route = parse(f"a ? {written} -> b : c").statements[0]
    assert isinstance(route, ast.Route) and route.branch is not None
    return route.branch.arms[0].condition


def value(written: str) -> ast.Value:
    """The value of `set x = <written>`."""
    setting = parse(f"set x = {written}").statements[0]
    assert isinstance(setting, ast.Setting)
    return setting.value.value


# ------------------------------------------------------------- whole texts


DESIGN_EXAMPLE = """\
# code_review.flow
flow code_review                        # optional header: the flow's name
set max_steps = 60                      # optional settings

node analyze = analyze_syntax           # bind a node name to a registered tool
node style   = check_style
node score   = score_code
node refine  = refine_code(max_fixes = 10)   # static keyword arguments (JSON literals)

start -> analyze                        # optional: default start is the first node named
analyze -> style -> score
score ? score < 80 and default(attempts, 0) < 3 -> refine : end
refine -> analyze
"""


def test_the_design_example_parses_to_its_ast() -> None:
    assert parse(DESIGN_EXAMPLE) == flow(
        ast.Header(n("code_review")),
        ast.Setting(n("max_steps"), ast.JsonValue(60)),
        ast.NodeDecl(n("analyze"), n("analyze_syntax"), None),
        ast.NodeDecl(n("style"), n("check_style"), None),
        ast.NodeDecl(n("score"), n("score_code"), None),
        ast.NodeDecl(
            n("refine"), n("refine_code"), (ast.Argument(n("max_fixes"), ast.JsonValue(10)),)
        ),
        chain("start", "analyze"),
        chain("analyze", "style", "score"),
        branch(
            "score",
            (
                binary(
                    "and",
                    binary("<", path("score"), num(80)),
                    binary("<", ast.Call("default", (path("attempts"), num(0))), num(3)),
                ),
                "refine",
            ),
            otherwise="end",
        ),
        chain("refine", "analyze"),
    )


def test_the_one_liner_from_the_request_parses_as_written() -> None:
    assert parse("analyze -> style -> score; score ? score<80 -> refine : end") == flow(
        chain("analyze", "style", "score"),
        branch("score", (binary("<", path("score"), num(80)), "refine"), otherwise="end"),
    )


@pytest.mark.parametrize("source", ["", "\n\n", ";;;", " \t\f", "# only a comment", "\n;\n# c\n;"])
def test_texts_without_statements_are_an_empty_flow(source: str) -> None:
    assert parse(source) == flow()


# ------------------------------------------------------------ statements


def test_header() -> None:
    assert parse("flow code_review") == flow(ast.Header(n("code_review")))


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("60", 60),
        ("0", 0),
        ("-3", -3),
        ("-0", 0),
        ("2.5", 2.5),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        ("-1.5E-2", -0.015),
        ('"text"', "text"),
        ("'single'", "single"),
        ('"tab\\tnew\\nquote\\"slash\\/back\\\\"', 'tab\tnew\nquote"slash/back\\'),
        ("'it\\'s'", "it's"),
        ('"\\u00e9\\ud83d\\ude00"', "é😀"),
        ('"é😀"', "é😀"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("[1, -2, [3.5, []],]", [1, -2, [3.5, []]]),
        ("{}", {}),
        (
            '{"a": 1, \'b\': [true, null], "c": {"d": -1},}',
            {"a": 1, "b": [True, None], "c": {"d": -1}},
        ),
    ],
)
def test_static_values_are_json_literals(written: str, expected: ast.Value) -> None:
    actual = value(written)
    assert actual == expected
    assert type(actual) is type(expected)


def test_object_keys_keep_their_order() -> None:
    members = value('{"z": 1, "a": 2, "m": 3}')
    assert isinstance(members, dict)
    assert list(members) == ["z", "a", "m"]


def test_setting() -> None:
    assert parse("set max_steps = 60") == flow(ast.Setting(n("max_steps"), ast.JsonValue(60)))


def test_node_declaration_without_arguments() -> None:
    assert parse("node a = tool") == flow(ast.NodeDecl(n("a"), n("tool"), None))


def test_node_declaration_with_empty_parentheses_is_not_the_same_as_none() -> None:
    assert parse("node a = tool()") == flow(ast.NodeDecl(n("a"), n("tool"), ()))
    assert parse("node a = tool()") != parse("node a = tool")


def test_node_declaration_with_keyword_arguments() -> None:
    parsed = parse('node refine = refine_code(max_fixes = 10, mode = "fast", tags = ["a"],)')
    assert parsed == flow(
        ast.NodeDecl(
            n("refine"),
            n("refine_code"),
            (
                ast.Argument(n("max_fixes"), ast.JsonValue(10)),
                ast.Argument(n("mode"), ast.JsonValue("fast")),
                ast.Argument(n("tags"), ast.JsonValue(["a"])),
            ),
        )
    )


def policy(name: str, value: ast.Value) -> ast.Policy:
    return ast.Policy(n(name), ast.JsonValue(value))


def test_node_declaration_with_policies_keeps_them_in_the_order_written() -> None:
    parsed = parse(
        'node fetch = call_api(url = "https://x") with timeout = 5, retries = 3, backoff = 0.5'
    )
    assert parsed == flow(
        ast.NodeDecl(
            n("fetch"),
            n("call_api"),
            (ast.Argument(n("url"), ast.JsonValue("https://x")),),
            policies=(policy("timeout", 5), policy("retries", 3), policy("backoff", 0.5)),
        )
    )
    backwards = parse("node a = tool with backoff = 0, timeout = 1.5")
    assert backwards == flow(
        ast.NodeDecl(
            n("a"), n("tool"), None, policies=(policy("backoff", 0), policy("timeout", 1.5))
        )
    )


def test_policies_take_any_value_and_any_name_the_compiler_then_checks() -> None:
    parsed = parse('node a = tool() with timeot = "5", retries = -1, retries = [1]')
    assert parsed == flow(
        ast.NodeDecl(
            n("a"),
            n("tool"),
            (),
            policies=(policy("timeot", "5"), policy("retries", -1), policy("retries", [1])),
        )
    )


def test_policies_are_part_of_equality() -> None:
    assert parse("node a = t with retries = 1") != parse("node a = t")
    assert parse("node a = t with retries = 1") != parse("node a = t with retries = 2")


def test_with_is_a_keyword_only_after_a_declarations_tool() -> None:
    parsed = parse("node with = with with retries = 1\nwith -> end\na ? with > 1 -> b : end")
    decl, route, branched = parsed.statements
    assert decl == ast.NodeDecl(n("with"), n("with"), None, policies=(policy("retries", 1),))
    assert route == chain("with", "end")
    assert isinstance(branched, ast.Route) and branched.branch is not None
    assert branched.branch.arms[0].condition == binary(">", path("with"), num(1))


def test_settings_for_the_policies() -> None:
    parsed = parse("set timeout = 30\nset retries = 0\nset backoff = 0.5")
    assert parsed == flow(
        ast.Setting(n("timeout"), ast.JsonValue(30)),
        ast.Setting(n("retries"), ast.JsonValue(0)),
        ast.Setting(n("backoff"), ast.JsonValue(0.5)),
    )


@pytest.mark.parametrize("word", ["start", "end", "flow", "node", "set", "in", "not", "true"])
def test_keywords_are_names_after_a_dot(word: str) -> None:
    assert condition(f"x.{word}") == path("x", word)


def test_start_and_end_are_node_names_in_routes() -> None:
    assert parse("start -> a -> end") == flow(chain("start", "a", "end"))


def test_chains() -> None:
    assert parse("a -> b\nb -> c -> d -> e") == flow(chain("a", "b"), chain("b", "c", "d", "e"))


def test_branch_with_several_arms() -> None:
    source = "score ? score >= 90 -> publish : score >= 80 -> review : refine"
    assert parse(source) == flow(
        branch(
            "score",
            (binary(">=", path("score"), num(90)), "publish"),
            (binary(">=", path("score"), num(80)), "review"),
            otherwise="refine",
        )
    )


def test_branch_at_the_end_of_a_chain() -> None:
    assert parse("a -> b ? ok -> c : end") == flow(
        ast.Route((n("a"), n("b")), ast.Branch((ast.Arm(path("ok"), n("c")),), n("end")))
    )


@pytest.mark.parametrize(
    "source",
    [
        "a ->\n  b ->\n\n  c",
        "a -> # why\n  b -> # comments may follow\n  c",
        "a ->\r\n  b ->\r\n  c",
    ],
)
def test_a_line_ending_in_an_arrow_continues(source: str) -> None:
    assert parse(source) == flow(chain("a", "b", "c"))


@pytest.mark.parametrize(
    "source",
    [
        "s ?\n  x -> b :\n  y -> c :\n  d",
        "s ? # first\n  x -> b : # second\n  y -> c : # else\n  d",
        "s ? x ->\n b :\n y ->\n c :\n d",
    ],
)
def test_a_line_ending_in_a_question_mark_or_colon_continues(source: str) -> None:
    assert parse(source) == flow(branch("s", (path("x"), "b"), (path("y"), "c"), otherwise="d"))


@pytest.mark.parametrize(
    "source",
    [
        "s ? x -> b\n  : y -> c\n  : d",
        "s ? x -> b  # first\n  # between\n\n  : y -> c\r\n  : d",
        "s ?\n  x -> b\n  : y -> c :\n  d",
    ],
)
def test_a_line_that_starts_with_a_colon_continues_the_branch(source: str) -> None:
    assert parse(source) == flow(branch("s", (path("x"), "b"), (path("y"), "c"), otherwise="d"))


@pytest.mark.parametrize(
    ("multi", "single"),
    [
        (
            "node x = t(a = 1,\n  b = 2)",
            "node x = t(a = 1, b = 2)",
        ),
        (
            "node x = t(\n  a = 1,  # one\n\n  b = 2,  # two\n)",
            "node x = t(a = 1, b = 2,)",
        ),
        (
            'node x = t(a = [\n  1,\n  2\n], b = {\n  "k": [\n    true\n  ],\n  "j": null\n})',
            'node x = t(a = [1, 2], b = {"k": [true], "j": null})',
        ),
        (
            "node x = t(a = 1) with timeout = 5,\n  retries = 2",
            "node x = t(a = 1) with timeout = 5, retries = 2",
        ),
        ("set s = [\n]", "set s = []"),
        ("node x = t(\n)", "node x = t()"),
        (
            "s ? len([\n  a,\n  b\n]) > max(\n  1,\n  2\n) -> e : f",
            "s ? len([a, b]) > max(1, 2) -> e : f",
        ),
        ("s ? (\n  a or b\n) -> e : f", "s ? (a or b) -> e : f"),
    ],
)
def test_arguments_lists_and_objects_may_span_lines(multi: str, single: str) -> None:
    assert parse(multi) == parse(single)
    assert parse(multi.replace("\n", "\r\n")) == parse(single)


def test_lines_after_a_statement_that_spans_lines_keep_their_numbers() -> None:
    (_, route) = parse("node x = t(\n  a = 1,\n)\na -> b").statements
    assert route.span == Span(4, 1, 4, 7)
    (branch_route,) = parse("s ? x -> b\n  : c\n").statements
    assert branch_route.span == Span(1, 1, 2, 6)


def test_semicolons_and_new_lines_separate_statements() -> None:
    expected = flow(chain("a", "b"), chain("b", "c"), chain("c", "d"))
    assert parse("a -> b; b -> c\nc -> d") == expected
    assert parse(";\n; a -> b ;; b -> c ;\n\n c -> d ;\n") == expected


def test_comments_run_to_the_end_of_the_line() -> None:
    source = "# head\na -> b # tail -> c\n# a -> z\n  # indented\nb -> c # last, no new line"
    assert parse(source) == flow(chain("a", "b"), chain("b", "c"))


def test_a_hash_in_a_string_is_not_a_comment() -> None:
    assert parse('a ? x == "#1" -> b : c') == flow(
        branch("a", (binary("==", path("x"), text("#1")), "b"), otherwise="c")
    )


def test_crlf_line_ends_are_accepted() -> None:
    assert parse("a -> b\r\nb -> c\r\n") == flow(chain("a", "b"), chain("b", "c"))


def test_a_byte_order_mark_is_skipped() -> None:
    assert parse("\ufeffflow x\r\na -> b\r\n") == flow(ast.Header(n("x")), chain("a", "b"))


def test_tabs_and_form_feeds_are_spaces() -> None:
    assert parse("a\t->\fb") == flow(chain("a", "b"))


# -------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("0", num(0)),
        ("42", num(42)),
        ("123456789012345678901234567890", num(123456789012345678901234567890)),
        ("2.5", ast.Literal("float", 2.5)),
        ("1e3", ast.Literal("float", 1000.0)),
        ('"double"', text("double")),
        ("'single'", text("single")),
        ('"a\\"b\\u0041"', text('a"bA')),
        ("true", ast.Literal("bool", True)),
        ("false", ast.Literal("bool", False)),
        ("null", ast.Literal("null", None)),
        ("[]", ast.ListExpr(())),
        ('[1, "x", y,]', ast.ListExpr((num(1), text("x"), path("y")))),
        ("[[1], []]", ast.ListExpr((ast.ListExpr((num(1),)), ast.ListExpr(())))),
    ],
)
def test_literals_in_conditions(written: str, expected: ast.Expr) -> None:
    assert condition(written) == expected


def test_a_literal_keeps_its_kind() -> None:
    assert condition("1") != condition("1.0")
    assert condition("true") != condition("1")
    assert condition("null") != condition("false")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("score", path("score")),
        ("review.score", path("review", "score")),
        ("issues[0].line", path("issues", 0, "line")),
        ("issues[-1]", path("issues", -1)),
        ('labels["needs review"]', path("labels", "needs review")),
        ("labels['x'][2]['y']", path("labels", "x", 2, "y")),
        ("a.b.c.d", path("a", "b", "c", "d")),
        ("_private.x_1", path("_private", "x_1")),
    ],
)
def test_paths(written: str, expected: ast.Expr) -> None:
    assert condition(written) == expected


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("len(x)", ast.Call("len", (path("x"),))),
        ("exists(a.b)", ast.Call("exists", (path("a", "b"),))),
        ("default(attempts, 0)", ast.Call("default", (path("attempts"), num(0)))),
        ("max(a, b, 3,)", ast.Call("max", (path("a"), path("b"), num(3)))),
        ("f()", ast.Call("f", ())),
        (
            "abs(min(a, -b))",
            ast.Call("abs", (ast.Call("min", (path("a"), ast.Unary("-", path("b")))),)),
        ),
        ("len(a or b)", ast.Call("len", (binary("or", path("a"), path("b")),))),
    ],
)
def test_function_calls(written: str, expected: ast.Expr) -> None:
    assert condition(written) == expected


a, b, c, d = path("a"), path("b"), path("c"), path("d")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        # precedence, loosest first: or; and; not; comparisons; + -; * / %; unary -
        ("a or b and c", binary("or", a, binary("and", b, c))),
        ("a and b or c", binary("or", binary("and", a, b), c)),
        ("not a and b", binary("and", ast.Unary("not", a), b)),
        ("not a == b", ast.Unary("not", binary("==", a, b))),
        ("a == b + c", binary("==", a, binary("+", b, c))),
        ("a + b * c", binary("+", a, binary("*", b, c))),
        ("a * b + c", binary("+", binary("*", a, b), c)),
        ("-a * b", binary("*", ast.Unary("-", a), b)),
        ("-a.b", ast.Unary("-", path("a", "b"))),
        ("a < b or c >= d", binary("or", binary("<", a, b), binary(">=", c, d))),
        # left associativity
        ("a or b or c", binary("or", binary("or", a, b), c)),
        ("a and b and c", binary("and", binary("and", a, b), c)),
        ("a - b - c", binary("-", binary("-", a, b), c)),
        ("a / b * c % d", binary("%", binary("*", binary("/", a, b), c), d)),
        # parentheses group and leave no node
        ("(a or b) and c", binary("and", binary("or", a, b), c)),
        ("a - (b - c)", binary("-", a, binary("-", b, c))),
        ("((a))", a),
        ("(a < b) == (c < d)", binary("==", binary("<", a, b), binary("<", c, d))),
        # unary operators nest
        ("not not a", ast.Unary("not", ast.Unary("not", a))),
        ("- -a", ast.Unary("-", ast.Unary("-", a))),
        ("--a", ast.Unary("-", ast.Unary("-", a))),
        ("-1", ast.Unary("-", num(1))),
        ("a - -1", binary("-", a, ast.Unary("-", num(1)))),
        ("a-1", binary("-", a, num(1))),
        # membership
        ("a in b", binary("in", a, b)),
        ("a not in b", binary("not in", a, b)),
        ("a  not   in b", binary("not in", a, b)),
        ("not a in b", ast.Unary("not", binary("in", a, b))),
        ("a in [1, 2]", binary("in", a, ast.ListExpr((num(1), num(2))))),
    ],
)
def test_operator_precedence_and_associativity(written: str, expected: ast.Expr) -> None:
    assert condition(written) == expected


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
def test_every_comparison_operator(op: ast.BinaryOp) -> None:
    assert condition(f"a {op} b") == binary(op, a, b)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%", "and", "or"])
def test_every_arithmetic_and_logical_operator(op: ast.BinaryOp) -> None:
    assert condition(f"a {op} b") == binary(op, a, b)


def test_spaces_between_tokens_are_optional() -> None:
    assert condition("a<=b+1") == binary("<=", a, binary("+", b, num(1)))
    assert condition("len(x)>0") == binary(">", ast.Call("len", (path("x"),)), num(0))


# ------------------------------------------------------------------- spans


def test_statement_and_name_spans() -> None:
    parsed = parse("flow demo\nset max_steps = [1, 2]\nnode a = f(x = -1)\nnode t = tool\n")
    header, setting, decl, plain = parsed.statements
    assert isinstance(header, ast.Header)
    assert header.span == Span(1, 1, 1, 10)
    assert header.name.span == Span(1, 6, 1, 10)
    assert isinstance(setting, ast.Setting)
    assert setting.span == Span(2, 1, 2, 23)
    assert setting.name.span == Span(2, 5, 2, 14)
    assert setting.value.span == Span(2, 17, 2, 23)
    assert isinstance(decl, ast.NodeDecl) and decl.args is not None
    assert decl.span == Span(3, 1, 3, 19)
    assert decl.tool.span == Span(3, 10, 3, 11)
    assert decl.args[0].span == Span(3, 12, 3, 18)
    assert decl.args[0].value.span == Span(3, 16, 3, 18)
    assert isinstance(plain, ast.NodeDecl)
    assert plain.span == Span(4, 1, 4, 14)
    assert parsed.span == Span(1, 1, 4, 14)


def test_policy_spans_and_a_declaration_that_ends_with_its_policies() -> None:
    parsed = parse(
        "node a = f(x = 1) with timeout = 5, retries = 3\nnode b = g with backoff = 0.25"
    )
    with_args, plain = parsed.statements
    assert isinstance(with_args, ast.NodeDecl) and isinstance(plain, ast.NodeDecl)
    assert with_args.span == Span(1, 1, 1, 48)
    timeout, retries = with_args.policies
    assert timeout.span == Span(1, 24, 1, 35)
    assert timeout.name.span == Span(1, 24, 1, 31)
    assert timeout.value.span == Span(1, 34, 1, 35)
    assert retries.span == Span(1, 37, 1, 48)
    assert plain.span == Span(2, 1, 2, 31)
    assert plain.policies[0].value.span == Span(2, 27, 2, 31)


def test_spans_of_a_route_over_several_lines() -> None:
    parsed = parse("start -> a ->\n  b\nb ? len(x) > 1 -> c :\n  end")
    chained, branched = parsed.statements
    assert isinstance(chained, ast.Route) and isinstance(branched, ast.Route)
    assert chained.span == Span(1, 1, 2, 4)
    assert [name.span for name in chained.nodes] == [
        Span(1, 1, 1, 6),
        Span(1, 10, 1, 11),
        Span(2, 3, 2, 4),
    ]
    assert branched.span == Span(3, 1, 4, 6)
    assert branched.branch is not None
    assert branched.branch.span == Span(3, 3, 4, 6)
    arm = branched.branch.arms[0]
    assert arm.span == Span(3, 5, 3, 20)
    assert arm.target.span == Span(3, 19, 3, 20)
    assert branched.branch.otherwise.span == Span(4, 3, 4, 6)
    comparison = arm.condition
    assert isinstance(comparison, ast.Binary) and isinstance(comparison.left, ast.Call)
    assert comparison.span == Span(3, 5, 3, 15)
    assert comparison.left.span == Span(3, 5, 3, 11)
    assert comparison.left.name_span == Span(3, 5, 3, 8)
    assert comparison.left.args[0].span == Span(3, 9, 3, 10)
    assert comparison.right.span == Span(3, 14, 3, 15)


def test_a_group_spans_its_parentheses() -> None:
    assert condition("(  a.b  )").span == Span(1, 5, 1, 14)
    assert condition("-(a + b)").span == Span(1, 5, 1, 13)
    product = condition("(a + b) * c")
    assert isinstance(product, ast.Binary)
    assert product.span == Span(1, 5, 1, 16)
    assert product.left.span == Span(1, 5, 1, 12)


def test_spans_after_a_bom_and_crlf_count_characters_from_the_line_start() -> None:
    parsed = parse("\ufeffa -> b\r\nc ? x.y[0] -> d : e")
    first, second = parsed.statements
    assert first.span == Span(1, 1, 1, 7)
    assert isinstance(second, ast.Route) and second.branch is not None
    assert second.span == Span(2, 1, 2, 20)
    assert second.branch.arms[0].condition.span == Span(2, 5, 2, 11)


def test_spans_count_code_points_not_bytes() -> None:
    parsed = parse('a ? x == "héllo😀" -> b : c')
    route = parsed.statements[0]
    assert isinstance(route, ast.Route) and route.branch is not None
    assert route.branch.arms[0].target.span == Span(1, 22, 1, 23)


def test_spans_do_not_take_part_in_equality() -> None:
    assert parse("a -> b") == parse("\n\n   a   ->   b  # moved")


def test_a_sub_flow_node_names_the_flow_after_flow() -> None:
    assert parse("node a = flow review") == flow(
        ast.NodeDecl(n("a"), n("review"), None, subflow=True)
    )
    pinned = parse('node a = flow review(graph_id = "x") with on_error = end')
    (decl,) = pinned.statements
    assert isinstance(decl, ast.NodeDecl)
    assert decl.subflow is True
    assert decl.tool == n("review")
    assert decl.args is not None and [a.name.text for a in decl.args] == ["graph_id"]
    assert [p.name.text for p in decl.policies] == ["on_error"]
    # `flow` is a keyword after `=`: no tool can be named so.
    assert parse("node a = review") == flow(ast.NodeDecl(n("a"), n("review"), None))
