"""Add up prices: the definition below never closes its parenthesis."""


def total(prices:
    return sum(prices)
