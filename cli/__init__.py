"""The `flowc` command: argv -> exit code, a thin and lazily importing front to the layers."""
