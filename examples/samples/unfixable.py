"""Evaluate formulas typed by a user: every finding here needs a person to fix it."""

from math import *


def evaluate(formula, names={}):
    """The value of `formula`, with `names` bound."""
    assert (formula, "the formula must not be empty")
    return eval(formula, {"__builtins__": {}}, names)


def run(script, history=[]):
    """Run `script` and remember it."""
    exec(script)
    history.append(script)
    return history
