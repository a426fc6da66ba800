"""The ``stream-sentinel`` command: one verb per job, all built from one Config.

Errors are one line on stderr and an exit code (``exits``), never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from ..config import ConfigError, load_config
from ..logsetup import LOG_LEVELS, configure_logging, parse_level
from ..source_file import LogReadError
from ..version import package_version
from .args import build_parser
from .exits import EXIT_BROKEN_PIPE, EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so a closed pipe is seen while it can still be handled
    except BrokenPipeError:
        # The reader left (`replay ... | head -1`); whatever was left to print has
        # no reader. stdout is pointed at /dev/null so the exit flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser(package_version()).parse_args(argv)
    cli_level = None
    if args.log_level is not None:
        cli_level = parse_level(args.log_level)
        if cli_level is None:
            print(
                f"error: --log-level {args.log_level!r}: use one of {', '.join(LOG_LEVELS)}",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    configure_logging(cli_level or "INFO", "text")
    from . import commands

    if args.verb == "score":
        return commands.cmd_score(args)
    try:
        cfg = load_config(getattr(args, "config", None), os.environ)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(cli_level or cfg.log.level, cfg.log.format)
    handler = {
        "run": commands.cmd_run,
        "replay": commands.cmd_replay,
        "produce": commands.cmd_produce,
        "simulate": commands.cmd_simulate,
        "baseline": commands.cmd_baseline,
        "topics": commands.cmd_topics,
        "record": commands.cmd_record,
        "bridge": commands.cmd_bridge,
    }[args.verb]
    try:
        return asyncio.run(handler(args, cfg))
    except LogReadError as exc:
        print(f"error: cannot read {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
