"""flowc: workflows written in a small checked language, compiled to IR, run and recorded.

The package's layers are subpackages, imported one way only:
`flowc.cli -> flowc.server -> flowc.runtime -> flowc.compiler -> flowc.dsl`.
"""
