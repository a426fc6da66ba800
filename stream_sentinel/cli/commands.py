"""The verbs' bodies: parse nothing, build from Config, run, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import orjson

from .. import untrusted
from ..config import Config, ConfigError
from ..config_env import read_secret_file, secret_path
from ..evaluate import BaselineProvider, Evaluator
from ..ingest import DeadLetter
from ..model import Tick
from ..replay import ReplaySummary, replay
from ..source_file import total_bytes
from ..store.base import StoreUnavailable
from ..store.build import Storage, check_url, open_storage
from ..wiring import build_rules, storage_settings, tenants_top_k
from .exits import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, EXIT_TOPIC_MISSING, EXIT_UNAVAILABLE

log = logging.getLogger("stream_sentinel")


def _progress(paths: list[str], enabled: bool, stack: ExitStack) -> Callable[[int], None] | None:
    """A tqdm bar on a terminal; plain periodic log lines otherwise."""
    total = total_bytes(paths)
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        bar = stack.enter_context(
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="replay")
        )

        def advance(n: int) -> None:
            bar.update(n)

        return advance
    state = {"done": 0, "last": time.monotonic()}

    def line(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= 5.0:
            state["last"] = now
            pct = f" ({100 * state['done'] / total:.0f}%)" if total else ""
            log.info("replay: %d bytes read%s", state["done"], pct)

    return line


def format_summary(s: ReplaySummary) -> str:
    lines = [
        f"events read: {s.lines}  counted: {s.counted}  dead-lettered: {s.dead_lettered}",
        f"ticks: {s.ticks}  time: {s.seconds:.2f}s  ({s.events_per_s:,.0f} events/s)",
    ]
    if s.dead_reasons:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(s.dead_reasons.items()))
        lines.append(f"dead-letter reasons: {reasons}")
    lines.append(f"status transitions: {len(s.transitions)}")
    for t in s.transitions:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t.at))
        red = ",".join(t.red) or "-"
        top = ", ".join(f"{u!r}:{r:.2f}" for u, r in t.top_users[:3]) or "-"
        lines.append(f"  {at}  {t.before or 'start'} -> {t.after}  red: {red}  top users: {top}")
    if s.tenant_transitions_total:
        lines.append(f"tenant transitions: {s.tenant_transitions_total}")
    for tt in s.tenant_transitions:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tt.at))
        red = ",".join(tt.red) or "-"
        tenant = untrusted.label(tt.tenant)
        lines.append(f"  {at}  tenant {tenant}  {tt.before or 'start'} -> {tt.after}  red: {red}")
    if (more := s.tenant_transitions_total - len(s.tenant_transitions)) > 0:
        lines.append(f"  (+{more} more tenant transitions: see the timeline)")
    return "\n".join(lines)


async def _baselines(
    cfg: Config, storage: Storage, learn_from: list[str] | None
) -> BaselineProvider:
    if learn_from:
        from .baseline import learned_provider

        return await learned_provider(learn_from, cfg)
    from ..baselines import build_baselines

    return build_baselines(cfg, storage.history, storage.store)


# matplotlib is an optional extra (pyproject.toml): the service never draws
REPORT_INSTALL = "pip install 'stream-sentinel[report]'"


def _report_unavailable() -> str | None:
    """Why ``--report`` cannot be drawn here, or None. Asked before the replay
    starts, so a long backtest does not fail at its very end."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"--report needs the report extra (matplotlib): {REPORT_INSTALL}"
    return None


def _replay_redis_url(args: argparse.Namespace) -> str | None:
    """The URL of ``--redis``, ``--redis-url-file`` or ``--redis-url-env``; ConfigError names
    the option, never the URL (it may hold a password)."""
    if args.redis_url_file is not None:
        path = secret_path(args.redis_url_file, "--redis-url-file")
        url: str | None = read_secret_file(path, "--redis-url-file").strip()
        option = "--redis-url-file"
    elif args.redis_url_env is not None:
        url, option = os.environ.get(args.redis_url_env), "--redis-url-env"
        if not url:
            raise ConfigError(option, f"the variable {args.redis_url_env!r} is unset or empty")
    else:
        url, option = args.redis, "--redis"
    if url is not None and (problem := check_url(url)):
        # checked like redis.url in the config; the URL is not echoed (a password)
        raise ConfigError(option, problem)
    return url


async def cmd_replay(args: argparse.Namespace, cfg: Config) -> int:
    try:
        redis_url = _replay_redis_url(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.report and (problem := _report_unavailable()):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # without --redis the embedded store, whatever the config says: a replay
    # is a private backtest; with it, a private prefix, so a backtest never
    # mixes with live counters
    settings = storage_settings(
        cfg,
        redis_url=redis_url or "",
        prefix=f"{cfg.redis.key_prefix}:replay:{uuid.uuid4().hex[:8]}",
    )
    ticks: list[dict[str, Any]] = []
    try:
        async with open_storage(settings) as storage:
            summary = await _replay_into(args, cfg, storage, ticks)
    except OutputError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT
    print(format_summary(summary))
    if args.report:
        from ..report import render_report

        html = render_report(
            ticks,
            config=cfg.redacted_dict(),
            title=f"stream-sentinel replay of {', '.join(Path(p).name for p in args.logs)}",
        )
        try:
            with _open_text(args.report, "--report") as out:
                out.write(html)
        except OutputError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INPUT
        print(f"report: {args.report}")
    if args.timeline:
        print(f"timeline: {args.timeline}")
    return 0


async def _replay_into(
    args: argparse.Namespace, cfg: Config, storage: Storage, ticks: list[dict[str, Any]]
) -> ReplaySummary:
    """Run the replay on ``storage``, writing the timeline and dead letters;
    ``ticks`` collects the ticks for the report."""
    store = storage.store
    baselines = await _baselines(cfg, storage, args.learn_from)
    evaluator = Evaluator(store, build_rules(cfg), baselines, tenants_top_k=tenants_top_k(cfg))
    with ExitStack() as stack:
        timeline: IO[bytes] | None = None
        dead_out: IO[bytes] | None = None
        if args.timeline:
            timeline = stack.enter_context(_open_out(args.timeline, "--timeline"))
        if args.dead_letters:
            dead_out = stack.enter_context(_open_out(args.dead_letters, "--dead-letters"))

        def on_tick(tick: Tick) -> None:
            line = tick.to_json()
            if args.report:
                ticks.append(line)
            if timeline is not None:
                timeline.write(orjson.dumps(line) + b"\n")

        def on_dead(dead: DeadLetter) -> None:
            if dead_out is not None:
                dead_out.write(dead.to_json() + b"\n")

        on_bytes = _progress(args.logs, not args.no_progress, stack)
        try:
            return await replay(
                args.logs,
                cfg=cfg,
                store=store,
                evaluator=evaluator,
                on_tick=on_tick,
                on_dead=on_dead,
                on_bytes=on_bytes,
            )
        finally:
            # a backtest's counters are scratch: nothing left behind in a shared Redis
            try:
                await store.drop_all()
            except StoreUnavailable as exc:  # scratch keys expire by themselves anyway
                log.warning("could not delete replay keys: %s", exc)


class OutputError(Exception):
    """An output file that cannot be written; the message is the line for the user."""


def _open_out(path: str, option: str) -> IO[bytes]:
    try:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p.open("wb")
    except OSError as exc:
        raise OutputError(f"error: {option}: cannot write {path}: {exc.strerror}") from None


def _open_text(path: str, option: str) -> IO[str]:
    try:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p.open("w", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"error: {option}: cannot write {path}: {exc.strerror}") from None


def cmd_score(args: argparse.Namespace) -> int:
    from ..sim.score import format_table, read_timeline, score
    from ..sim.truth import read_truth

    try:
        truth = read_truth(args.truth)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: --truth {args.truth}: {_why(exc)}", file=sys.stderr)
        return EXIT_INPUT
    try:
        timeline = list(read_timeline(args.timeline))
    except (OSError, ValueError) as exc:
        print(f"error: --timeline {args.timeline}: {_why(exc)}", file=sys.stderr)
        return EXIT_INPUT
    if args.clear_ticks < 1:
        print("error: --clear-ticks must be 1 or more", file=sys.stderr)
        return EXIT_INPUT
    report = score(truth, timeline, clear_ticks=args.clear_ticks)
    if args.json:
        print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_table(report))
    return 0


def _why(exc: BaseException) -> str:
    """One line saying what is wrong with an input file."""
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, KeyError):
        return f"not a truth file: missing key {exc.args[0]!r}"
    if isinstance(exc, orjson.JSONDecodeError):
        return f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def require_topics(cfg: Config, names: list[str], verb: str) -> int | None:
    """None when every topic exists, else the exit code after one line naming what is missing."""
    from ..kafka.topics import TopicsError, missing_message, missing_topics

    try:
        missing = await missing_topics(cfg, names)
    except TopicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if missing:
        print(missing_message(missing, verb), file=sys.stderr)
        return EXIT_TOPIC_MISSING
    return None


async def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    from ..app import run_service
    from ..kafka.topics import TopicsError, missing_message, missing_topics

    k = cfg.kafka
    try:
        missing = await missing_topics(
            cfg, [k.request_topic, k.response_topic, k.dlq_topic, k.alerts_topic]
        )
    except TopicsError as exc:
        # The service waits for the brokers itself: a broker starting up next to us is normal.
        log.warning("topics not checked: %s", exc)
        missing = []
    # Without the alerts topic the service still watches and alerts through its other
    # outputs (each event not sent is logged, and /readyz names the topic).
    needed = [name for name in missing if name != k.alerts_topic]
    if needed:
        print(missing_message(needed, "run"), file=sys.stderr)
        return EXIT_TOPIC_MISSING
    if missing:
        log.warning("alerts topic %s missing: alert events will not be sent", k.alerts_topic)
    return await run_service(cfg)


async def cmd_topics(args: argparse.Namespace, cfg: Config) -> int:
    from pydantic import ValidationError

    from ..kafka.topic_config import TopicsConfig
    from ..kafka.topics import TopicsError, create_topics, plan_topics

    flags = {
        "partitions": ("--partitions", args.partitions),
        "replication_factor": ("--replication-factor", args.replication_factor),
        "retention_hours": ("--retention-hours", args.retention_hours),
    }
    given = {key: value for key, (_, value) in flags.items() if value is not None}
    try:
        topics = TopicsConfig.model_validate({**cfg.topics.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        flag = flags[str(err["loc"][0])][0]
        print(f"error: {flag}: {err['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        outcomes = await create_topics(
            cfg,
            plan_topics(cfg, topics.partitions),
            replication_factor=topics.replication_factor,
            retention_hours=topics.retention_hours,
        )
    except TopicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for outcome in outcomes:
        print(outcome.describe())
    return EXIT_OK


async def cmd_produce(args: argparse.Namespace, cfg: Config) -> int:
    from .produce import produce_logs

    return await produce_logs(cfg, args.logs, speed=args.speed, shift_to_now=args.shift_to_now)


async def cmd_simulate(args: argparse.Namespace, cfg: Config) -> int:
    from .simulate import simulate_command

    return await simulate_command(args, cfg)


async def cmd_baseline(args: argparse.Namespace, cfg: Config) -> int:
    from .baseline import baseline_command

    return await baseline_command(args, cfg)


async def cmd_record(args: argparse.Namespace, cfg: Config) -> int:
    from .record import record_command

    return await record_command(args, cfg)


async def cmd_bridge(args: argparse.Namespace, cfg: Config) -> int:
    from .bridge import bridge_command

    return await bridge_command(args, cfg)
