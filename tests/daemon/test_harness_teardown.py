"""The daemon tests' harness stops the emulator's webhook deliveries before it closes the client
they post through (both harnesses share `daemon_running`)."""

from typing import Any

from crmsync.emulators.hubspot import HubSpotEmulator

from .harness import running


async def test_the_webhook_client_is_open_until_the_deliveries_have_stopped(tmp_path,
                                                                          slow_autojump):
    # A cancelled delivery task runs on to its next checkpoint: a delivery just started, or a
    # retry whose backoff just ended, posts once more. Through a closed client that post fails
    # with a RuntimeError instead of the cancellation, and the test fails in its teardown.
    closed_when_stopped: list[bool] = []

    def watch(emu: HubSpotEmulator) -> None:
        deliver = emu.run_webhooks

        async def run_webhooks(client: Any, **kwargs: Any) -> None:
            try:
                await deliver(client, **kwargs)
            finally:
                closed_when_stopped.append(client.is_closed)

        emu.run_webhooks = run_webhooks  # type: ignore[method-assign]

    async with running(tmp_path, configure=watch) as env:
        await env.wait_ready()
    assert closed_when_stopped == [False]
