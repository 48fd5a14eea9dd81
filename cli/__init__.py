"""The `flowc` command: argv -> exit code, a thin and lazily importing front to the layers."""

if __name__ != "flowc.cli":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.cli`, not `{__name__}`: flowc installs as one namespace")
