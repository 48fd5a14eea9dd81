"""Greet visitors and count their visits: it works, but it talks through `print`."""

import json


def greet(name, visits=None):
    """Greet `name` and count the visit."""
    if visits == None:
        visits = {}
    visits[name] = visits.get(name, 0) + 1
    print("Grüß dich,", name, "👋")
    print(f"visit number {visits[name]}")
    return visits


def load(path):
    """The visits saved at `path`, or none when the file cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except:
        print("could not read", path)
        return {}


def main():
    """Greet everyone on the list, then sign off without a line break."""
    visits = load("visits.json")
    for name in ["Zoë", "Åsa", "Ngũgĩ", "李雷"]:
        visits = greet(name, visits)
    print()
    print("bye", end="")
