"""The grammar of the Flow language, `flow.lark`, shipped as package data."""

if __name__ != "flowc.grammars":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.grammars`, not `{__name__}`: flowc installs as one namespace")
