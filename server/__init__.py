"""The server: settings, tables, store functions, the run service, FastAPI routes and WebSocket."""

if __name__ != "flowc.server":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.server`, not `{__name__}`: flowc installs as one namespace")
