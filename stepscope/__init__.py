"""The ``stepscope`` command line: one module per command under ``stepscope.cli``."""
