"""Which build this is: `--version` and the ``stream_sentinel_build_info`` gauge."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's, once installed)."""
    try:
        return version("stream-sentinel")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
