"""``manage.py run_flusher`` shuts its buffer down as the workers do: ``aclose`` after the
last flush, then the shared client. The flusher itself is tested live in
``test_live_storage.py``."""

from __future__ import annotations

import asyncio

import pytest

from gateway.management.commands import run_flusher


class Client:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    async def aclose(self) -> None:
        self.calls.append(f"{self.name}.aclose")


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    made = iter([Client("client", calls), Client("reader", calls)])
    monkeypatch.setattr(run_flusher.aqta_redis, "async_client", lambda **_: next(made))
    return calls


def _buffer(calls: list[str], failure: Exception | None = None) -> type:
    class Buffer:
        def __init__(self, client: Client, reader: Client) -> None:
            assert (client.name, reader.name) == ("client", "reader")

        async def run(self, stop: asyncio.Event, consume: bool = True) -> None:
            calls.append("run")
            if failure is not None:
                raise failure

        async def aclose(self) -> None:
            calls.append("buffer.aclose")

    return Buffer


def test_the_buffer_is_closed_with_aclose_after_its_run_then_the_client(calls, monkeypatch):
    monkeypatch.setattr(run_flusher, "RedisBuffer", _buffer(calls))

    asyncio.run(run_flusher.Command()._run())

    assert calls == ["run", "buffer.aclose", "client.aclose"]


def test_the_buffer_is_closed_even_when_its_run_fails(calls, monkeypatch):
    monkeypatch.setattr(run_flusher, "RedisBuffer", _buffer(calls, OSError("gone")))

    with pytest.raises(OSError, match="gone"):
        asyncio.run(run_flusher.Command()._run())

    assert calls == ["run", "buffer.aclose", "client.aclose"]
