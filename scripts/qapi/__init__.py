"""QAPI schema code generator for blockd (see scripts/qapi-gen.py)."""
