"""Easel model tooling: turns Stable Diffusion 1.5 weights into the ONNX folder layout that the Easel
engine runs, builds seeded random models for tests and benchmarks, and writes reference fixtures from
diffusers for the engine's parity tests.

Entry point: ``models/sdtool`` (``python -m tooling``). This file owns the package-wide error type and
version string; each concern lives in its own module (see ``models/README.md``).
"""

TOOL_NAME = "easel-sdtool"
TOOL_VERSION = "0.1.0"


class ToolError(Exception):
    """A user-facing failure: ``__main__`` prints it as one line and exits non-zero."""


def quiet_diffusers() -> None:
    """Silence diffusers' loading progress bars and advice (call after importing diffusers)."""
    try:
        import diffusers.utils.logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
