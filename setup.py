"""Build the optional C accelerator; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled, fdguard falls back to
the pure-Python reader with the same behaviour, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fdguard._speedups",
            sources=["src/fdguard/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall"],
        )
    ]
)
