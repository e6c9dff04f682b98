"""Builds the optional C extensions of the hot paths; all else is in pyproject.toml."""

from setuptools import setup

ext_modules = []
try:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        ["tallyd/hotpath.py", "tallyd/expand.py", "tallyd/plainget.py"],
        # The .pxd beside each module gives the C types; its annotations are for mypy.
        compiler_directives={
            "language_level": "3",
            "annotation_typing": False,
            "boundscheck": False,
            "wraparound": False,
        },
        quiet=True,
    )
    for ext in ext_modules:
        # Without a C compiler, tallyd still installs and runs hotpath.py as Python.
        ext.optional = True
except ImportError:
    pass

setup(ext_modules=ext_modules)
