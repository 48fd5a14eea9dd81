"""The tables of `dsl/syntax.py` against the grammar: one truth, checked.

Every table there restates part of `grammars/flow.lark`; these tests read the grammar with
Lark alone and fail when a table and the grammar disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from lark import Lark
from lark.grammar import NonTerminal, Rule, Symbol, Terminal

from flowc.dsl import syntax
from flowc.dsl.lexer import keywords_of
from flowc.dsl.parser import grammar_text

DOCS = Path(__file__).parents[2] / "docs" / "language.md"


@cache
def _grammar() -> Lark:
    return Lark(grammar_text(), parser="lalr", maybe_placeholders=False)


def _terminals() -> dict[str, str]:
    """Each terminal of the grammar and its regular expression."""
    return {t.name: t.pattern.to_regexp() for t in _grammar().terminals}


def test_every_fixed_text_is_the_one_text_its_terminal_matches() -> None:
    terminals = _terminals()
    for name, text in syntax.TOKENS.items():
        pattern = re.compile(terminals[name])
        assert pattern.fullmatch(text), name
        # Not a prefix of anything longer that NAME would read: `andy` is no `and`.
        assert not pattern.match(text + "x") or not text.isidentifier(), name


def test_every_terminal_has_a_name_in_messages() -> None:
    ignored = {"COMMENT"} | set(_grammar().ignore_tokens)
    named = set(syntax.SHOWN)
    assert set(_terminals()) - ignored - {"_NL"} <= named
    assert set(syntax.TOKENS) <= set(_terminals())


def test_the_keywords_are_the_lexers() -> None:
    assert keywords_of(_grammar().terminals) == syntax.KEYWORDS
    assert set(syntax.KEYWORDS) - {"with", "by"} == syntax.RESERVED


def test_the_reserved_words_are_the_documented_ones() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    listed = re.search(r"Reserved words,[^`]*`([a-z ]+)`", docs)
    assert listed is not None
    assert set(listed.group(1).split()) == syntax.RESERVED


def _rules() -> dict[str, list[Rule]]:
    rules: dict[str, list[Rule]] = {}
    for rule in _grammar().rules:
        rules.setdefault(str(rule.origin.name), []).append(rule)
    return rules


def _operators(expansion: Sequence[Symbol], rules: dict[str, list[Rule]]) -> set[str]:
    """The operator texts in one expansion; inlined `_rules` (`_comp_op`) are opened."""
    found: set[str] = set()
    for symbol in expansion:
        if isinstance(symbol, Terminal) and symbol.name in syntax.OPERATOR_TERMINALS:
            found.add(syntax.TOKENS[symbol.name])
        elif isinstance(symbol, NonTerminal) and symbol.name.startswith("_"):
            for rule in rules[symbol.name]:
                found.add(" ".join(syntax.TOKENS[s.name] for s in rule.expansion))
    return found


def _levels_from_the_grammar() -> dict[str, int]:
    """Operator -> level, by the nesting of the condition rules: `condition` is level 0.

    Each level's rule has one expansion that is the next level alone (`?or_expr: and_expr`)
    and the others hold its operators: binary ones between two operands, unary ones first.
    """
    rules = _rules()
    levels: dict[str, int] = {}
    name, level = "condition", 0
    while True:
        alternatives = rules[name]
        following = [
            r.expansion[0].name
            for r in alternatives
            if len(r.expansion) == 1 and isinstance(r.expansion[0], NonTerminal)
        ]
        for rule in alternatives:
            if len(rule.expansion) < 2:
                continue
            unary = isinstance(rule.expansion[0], Terminal)
            for op in _operators(rule.expansion[:1] if unary else rule.expansion[1:-1], rules):
                levels["neg" if unary and op == "-" else op] = level
        if len(following) != 1:
            return levels  # the atom: literals, paths, calls, lists, groups
        name, level = following[0], level + 1


def test_precedence_levels_follow_the_nesting_of_the_grammar_rules() -> None:
    assert _levels_from_the_grammar() == syntax.LEVELS
    assert max(syntax.LEVELS.values()) < syntax.ATOM


def test_the_operator_terminals_are_the_grammars() -> None:
    texts = {word for op in syntax.LEVELS for word in op.split() if op != "neg"} | {"-"}
    assert {syntax.TOKENS[t] for t in syntax.OPERATOR_TERMINALS} == texts
    comparisons = {op for op, level in syntax.LEVELS.items() if level == syntax.COMPARISON}
    assert {syntax.TOKENS[t] for t in syntax.COMPARISON_TERMINALS} == {
        op.split()[0] for op in comparisons
    }


def test_the_summarised_starts_are_what_the_grammar_lets_start_each_rule() -> None:
    from lark.common import ParserConf
    from lark.parsers.grammar_analysis import GrammarAnalyzer

    grammar = _grammar()
    first = GrammarAnalyzer(ParserConf(grammar.rules, {}, ["start"])).FIRST

    def starts(rule: str) -> set[str]:
        return {terminal.name for terminal in first[NonTerminal(rule)]}

    assert starts("condition") >= syntax.EXPRESSION_START
    assert starts("value") >= syntax.VALUE_START
    assert starts("node_ref") == syntax.NODE_NAME
    # A statement starts with one of its keywords or, being a route, with a node.
    statements = starts("_statement")
    assert statements >= syntax.STATEMENT_START
    keywords = {syntax.KEYWORDS[word] for word in syntax.STATEMENT_KEYWORDS}
    assert statements - starts("node_ref") == keywords
