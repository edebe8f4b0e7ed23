"""Two relay processes on one store: one leader publishes, the standby takes over mid-backlog.

The relay does not scale out: one leader holds the advisory lock and publishes the
whole log in order (docs/scaling.md says why). A second replica is for failover.
What a hand-over may cost is stated here exactly: the standby resumes from the
dead leader's last checkpoint, so the events that leader had sent past its last
checkpoint arrive twice, each once more at most, and nothing at or before that
checkpoint is sent again. Consumers deduplicate on `ce_id` or guard by version.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from eventstore import PostgresEventStore
from relay_service.settings import RelaySettings

from services.relay.tests.conftest import assert_complete_without_skips, collect, header, stock_events
from services.relay.tests.test_relay_process import RelayProcess, relays

pytestmark = pytest.mark.slow
_ = relays


async def test_a_standby_takes_over_mid_backlog_and_resends_only_what_the_leader_had_not_checkpointed(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    streams, per_stream = 200, 150
    expected = {f"stock-h{n}": per_stream for n in range(streams)}
    for stream in expected:
        await store.append(stream, stock_events(stream.removeprefix("stock-"), per_stream))
    total = streams * per_stream

    a = RelayProcess(relay_settings, tmp_path / "a.log").start()
    b = RelayProcess(relay_settings, tmp_path / "b.log").start()
    relays += [a, b]
    roles = {
        relay: (await relay.wait(lambda _, body: body["role"] in {"leader", "standby"}))["role"]
        for relay in (a, b)
    }
    assert sorted(roles.values()) == ["leader", "standby"]
    leader = next(relay for relay, role in roles.items() if role == "leader")
    standby = next(relay for relay, role in roles.items() if role == "standby")
    await leader.wait(lambda _, body: body["published_total"] >= 2000)
    leader.kill()

    await standby.wait(lambda _, body: body["role"] == "leader", timeout=30)
    body = await standby.wait(
        lambda _, body: body["lag_events"] == 0 and body["published_total"] > 0, timeout=120
    )
    records = await collect(
        relay_settings.kafka_bootstrap_servers, [f"{relay_settings.relay_topic_prefix}stock"], expected=total
    )

    assert_complete_without_skips(records, expected)
    sent = collections.Counter(int(header(record, "ce_position")) for record in records)
    positions = sorted(sent)
    assert len(positions) == total
    # The standby published everything after the checkpoint it resumed from, and nothing before it.
    resumed_after = total - body["published_total"]
    assert 2000 <= resumed_after < total, "the kill must land mid-backlog"
    checkpoint = positions[resumed_after - 1]
    assert all(count == 1 for position, count in sent.items() if position <= checkpoint)
    assert all(count <= 2 for count in sent.values())
