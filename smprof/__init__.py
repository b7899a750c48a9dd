"""The ``smprof`` command line: one module per command under ``smprof.cli``."""
