"""Build the Cython extensions of engine/, the hot path of clearing/ and the gateway's
duplicate-key scan.

GPUX_CYTHON_TRACE=1 turns on annotate (HTML next to each .pyx) and line
tracing, for profiling and coverage runs; the default build has neither.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

TRACE = os.environ.get("GPUX_CYTHON_TRACE") == "1"
macros = [("CYTHON_TRACE_NOGIL", "1")] if TRACE else []

extensions = [
    Extension(f"engine.{name}", [f"engine/{name}.pyx"], define_macros=macros,
              extra_compile_args=["-O3"])
    for name in ("book", "exchange")
] + [
    Extension("gateway.core.jsonkeys", ["gateway/core/jsonkeys.pyx"], define_macros=macros,
              extra_compile_args=["-O3"]),
] + [
    # Clearing's hot path is plain Python that Cython compiles as it is (pure Python mode).
    Extension(f"clearing.{name}", [f"clearing/{name}.py"], define_macros=macros,
              extra_compile_args=["-O3"])
    for name in ("exposure", "risk", "ledger")
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=TRACE,
        compiler_directives={"embedsignature": True, "linetrace": TRACE},
    ),
)
