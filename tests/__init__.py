"""The test suite of trio_codex: one folder per wing of the package, plus ``system``.

A package (with an ``__init__.py`` in every folder) so pytest's default ``prepend`` import mode
puts the repository root on ``sys.path`` and every module imports shared code the ordinary way,
``from tests.support.fakes import ScriptedBackend``.
"""
