"""The callback's path to Kafka: never blocks the host, counts what it drops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from integration.harness import free_port, read_topic

from stream_sentinel.integrations.kafka_sink import EventSink


def _events(n: int) -> list[dict[str, object]]:
    return [
        {"event_id": f"e{i}", "type": "request", "ts": 1.0 + i, "user_id": f"u{i % 3}",
         "blocked": False}
        for i in range(n)
    ]  # fmt: skip


async def test_offered_events_reach_their_topic_and_close_flushes(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await make_topic(2, "sink")
    sink = EventSink(
        topics={"request": topic, "response": topic},
        make_producer=lambda: AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all"),
        queue_size=1000,
    )
    assert sink.offer(_events(300)) == 300
    await sink.close()
    assert sink.stats.sent == 300 and sink.stats.lost_at_shutdown == 0
    got = await read_topic(kafka_bootstrap, topic, 300)
    assert sorted(e["event_id"] for e in got) == sorted(f"e{i}" for i in range(300))
    assert sink.offer(_events(1)) == 0, "a closed sink takes nothing"


async def test_with_kafka_unreachable_the_queue_bounds_what_is_held_and_losses_count() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    sink = EventSink(
        topics={"request": "t", "response": "t"},
        make_producer=lambda: AIOKafkaProducer(bootstrap_servers=nowhere),
        queue_size=50,
        flush_timeout_s=0.5,
    )
    accepted = sink.offer(_events(120))
    assert accepted == 50
    assert sink.stats.dropped_queue_full == 70
    await sink.close()
    assert sink.stats.sent == 0
    assert sink.stats.lost_at_shutdown == 50


async def test_an_event_no_encoder_takes_is_counted_not_raised(
    kafka_bootstrap: str, make_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await make_topic(1, "sink")
    sink = EventSink(
        topics={"request": topic, "response": topic},
        make_producer=lambda: AIOKafkaProducer(bootstrap_servers=kafka_bootstrap),
    )
    bad = {"event_id": "x", "type": "request", "ts": 1.0, "user_id": "\ud800", "blocked": False}
    assert sink.offer([bad, *_events(1)]) == 1
    await sink.close()
    assert sink.stats.dropped_unencodable == 1 and sink.stats.sent == 1
