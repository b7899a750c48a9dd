"""The folder ``stepscope run`` puts first on its command's ``PYTHONPATH``.

Why a package: so the wheel ships ``sitecustomize.py`` (setuptools packs packages only).
Nothing imports it as ``stepscope.collectors.bootstrap``; Python imports the file inside as
the top-level ``sitecustomize`` module at start-up.
"""
