"""The local stack's Redis keeps what it acknowledged across a restart (docs/redis-persistence.md)."""

from __future__ import annotations

from redis import Redis

from tests.stack.test_local_stack import run_stack, side_stack

_ = side_stack

# Ports of their own, above the ephemeral range like the other side stacks' (test_local_stack).
OFFSET = 5731
REDIS_URL = f"redis://127.0.0.1:{56379 + OFFSET}/0"


def test_the_local_stacks_redis_keeps_its_data_across_a_restart(side_stack: dict[str, str]) -> None:
    env = {**side_stack, "DEVSTACK_PORT_OFFSET": str(OFFSET)}
    try:
        started = run_stack(env, "up", "--only", "redis")
        assert started.returncode == 0, started.stderr
        assert f"REDIS_URL={REDIS_URL}" in started.stdout
        with Redis.from_url(REDIS_URL) as redis:
            assert redis.config_get("appendonly") == {"appendonly": "yes"}
            assert redis.config_get("appendfsync") == {"appendfsync": "always"}
            redis.set("rm:redis:g1:built", "kept")

        assert run_stack(env, "down", "--only", "redis").returncode == 0
        again = run_stack(env, "up", "--only", "redis")
        assert again.returncode == 0, again.stderr

        with Redis.from_url(REDIS_URL) as redis:
            assert redis.get("rm:redis:g1:built") == b"kept"
    finally:
        run_stack(env, "down")
