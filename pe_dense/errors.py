"""The one base class of the errors our code raises for bad user input (files, configs, arguments).

Command-line tools (:mod:`pe_dense.cli`) print such an error as one ``error: ...`` line instead of a traceback, so
every named error whose message states the problem and the fix derives from :class:`PEDenseError`. The concrete
classes also derive from the builtin they always were (``ValueError``, ``FileNotFoundError``, ...) so that existing
``except ValueError`` code keeps working.
"""


class PEDenseError(Exception):
    """Bad input whose message names the file or option at fault and how to fix it."""
