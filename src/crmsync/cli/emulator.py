"""`crmsync emulator hubspot|pipedrive`: serve an emulator on a local port."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from crmsync.emulators.hubspot import SERVER_REQUEST_ROOM, HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp
from crmsync.emulators.hubspot.ratelimit import TIERS
from crmsync.emulators.pipedrive import PipedriveEmulator
from crmsync.emulators.pipedrive.ratelimit import PLANS


def add_parser(subparsers: Any) -> None:
    """Adds `emulator hubspot|pipedrive …` to the `crmsync` command's subparsers."""
    parser = subparsers.add_parser("emulator", help="serve an emulator of a third-party API")
    apis = parser.add_subparsers(dest="emulator", metavar="API", required=True)
    hub = apis.add_parser(
        "hubspot",
        help="HubSpot's CRM API, in memory",
        description="Serve an in-memory HubSpot account (CRM objects, search, associations, "
        "pipelines, properties, OAuth, rate limits, webhooks) plus its admin API under /_emulator/.",
    )
    hub.add_argument("--host", default="127.0.0.1")
    hub.add_argument("--port", type=int, default=8765)
    hub.add_argument(
        "--token",
        action="append",
        dest="tokens",
        metavar="T",
        help="an accepted private-app token (repeatable; default: test-token)",
    )
    hub.add_argument("--tier", choices=sorted(TIERS), default="unlimited", help="rate-limit tier")
    hub.add_argument("--webhook-url", metavar="URL", help="deliver webhook events here")
    hub.add_argument(
        "--webhook-secret", metavar="S", help="the app's client secret that signs them"
    )
    hub.add_argument(
        "--oauth-app",
        metavar="CLIENT_ID",
        help="an OAuth app that may be installed (`crmsync connect hubspot`); its client secret "
        "is read from --oauth-client-secret-file",
    )
    hub.add_argument("--oauth-client-secret-file", metavar="F", help="the OAuth app's client secret")
    hub.add_argument(
        "--oauth-redirect-uri",
        action="append",
        metavar="URL",
        help="a redirect URL registered for the OAuth app (repeatable; default: any "
        "http://localhost URL)",
    )
    hub.add_argument(
        "--rotate-refresh-tokens",
        action="store_true",
        help="every refresh hands out a new refresh token and the old one stops working",
    )
    hub.add_argument(
        "--access-token-seconds", type=int, default=1800, metavar="S",
        help="lifetime of OAuth access tokens (default 1800)",
    )
    hub.add_argument(
        "--seed", type=int, default=0, help="seed of the generated account and of all randomness"
    )
    hub.add_argument(
        "--records",
        type=int,
        default=200,
        metavar="N",
        help="generate N contacts, N/4 companies, N/2 deals and N/50 owners (default 200; 0 for an "
        "empty account)",
    )
    _add_pipedrive(apis)


def _add_pipedrive(apis: Any) -> None:
    pd = apis.add_parser(
        "pipedrive",
        help="Pipedrive's API (v2 objects, v1 webhooks), in memory",
        description="Serve an in-memory Pipedrive company (persons, organizations, deals, "
        "pipelines, stages, fields, search, OAuth, token budget and burst limits, webhooks v2) "
        "under /api/v2 and /v1, plus its admin API under /_emulator/.",
    )
    pd.add_argument("--host", default="127.0.0.1")
    pd.add_argument("--port", type=int, default=8766)
    pd.add_argument(
        "--token",
        action="append",
        dest="tokens",
        metavar="T",
        help="an accepted API token (repeatable; default: test-token)",
    )
    pd.add_argument(
        "--plan",
        choices=list(PLANS),
        default="unlimited",
        help="rate-limit plan: daily token budget and burst window (default: unlimited)",
    )
    pd.add_argument("--seats", type=int, default=1, help="seats the daily budget is counted for")
    pd.add_argument("--webhook-url", metavar="URL", help="deliver every event here (webhooks v2)")
    pd.add_argument("--webhook-user", metavar="U", help="HTTP Basic user for the webhook")
    pd.add_argument(
        "--webhook-password-file",
        metavar="F",
        help="file holding the HTTP Basic password for the webhook",
    )
    pd.add_argument(
        "--seed", type=int, default=0, help="seed of the generated company and of all randomness"
    )
    pd.add_argument(
        "--records",
        type=int,
        default=200,
        metavar="N",
        help="generate N persons, N/4 organizations and N/2 deals (default 200; 0 for none)",
    )


def run(args: argparse.Namespace) -> int:
    if args.emulator == "pipedrive":
        return _run_pipedrive(args)
    if (args.webhook_url is None) != (args.webhook_secret is None):
        print(
            "crmsync emulator hubspot: --webhook-url and --webhook-secret go together",
            file=sys.stderr,
        )
        return 2
    if (args.oauth_app is None) != (args.oauth_client_secret_file is None):
        print(
            "crmsync emulator hubspot: --oauth-app and --oauth-client-secret-file go together",
            file=sys.stderr,
        )
        return 2
    apps: dict[str, OAuthApp] = {}
    if args.oauth_app is not None:
        try:
            with open(args.oauth_client_secret_file, encoding="utf-8") as f:
                secret = f.read(4096).strip()
        except OSError as exc:
            print(f"crmsync emulator hubspot: cannot read --oauth-client-secret-file: "
                  f"{exc.strerror}", file=sys.stderr)
            return 2
        apps[args.oauth_app] = OAuthApp(
            args.oauth_app, secret, redirect_uris=tuple(args.oauth_redirect_uri or ())
        )
    emu = HubSpotEmulator(
        tokens=tuple(args.tokens or ("test-token",)),
        tier=args.tier,
        seed=args.seed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        oauth_clients=apps,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
        access_token_seconds=args.access_token_seconds,
    )
    if args.records > 0:
        n = args.records
        made = emu.seed(
            {
                "generate": {
                    "owners": max(1, n // 50),
                    "companies": max(1, n // 4),
                    "contacts": n,
                    "deals": n // 2,
                },
                "seed": args.seed,
            }
        )
        summary = ", ".join(f"{len(ids)} {name}" for name, ids in made.items())
        print(f"seeded account {emu.portal_id}: {summary}", file=sys.stderr)
    trio.run(_serve, emu, args.host, args.port, "HubSpot")
    return 0


def _run_pipedrive(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"crmsync emulator pipedrive: {message}", file=sys.stderr)
        return 2

    if args.webhook_url is None and (args.webhook_user or args.webhook_password_file):
        return fail("--webhook-user and --webhook-password-file need --webhook-url")
    password = None
    if args.webhook_password_file is not None:
        try:
            with open(args.webhook_password_file, encoding="utf-8") as f:
                password = f.read(4096).strip()
        except OSError as exc:
            return fail(f"cannot read --webhook-password-file: {exc.strerror}")
    if args.seats < 1:
        return fail("--seats must be at least 1")
    emu = PipedriveEmulator(
        tokens=tuple(args.tokens or ("test-token",)),
        plan=args.plan,
        seed=args.seed,
        seats=args.seats,
        webhook_url=args.webhook_url,
        webhook_user=args.webhook_user,
        webhook_password=password,
    )
    if args.records > 0:
        n = args.records
        made = emu.seed(
            {
                "generate": {"organizations": max(1, n // 4), "persons": n, "deals": n // 2},
                "seed": args.seed,
            }
        )
        summary = ", ".join(f"{len(ids)} {name}" for name, ids in made.items())
        print(f"seeded company {emu.company_id}: {summary}", file=sys.stderr)
    trio.run(_serve, emu, args.host, args.port, "Pipedrive")
    return 0


async def _serve(emu: HubSpotEmulator | PipedriveEmulator, host: str, port: int, name: str) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.alpn_protocols = ["http/1.1"]
    config.accesslog = "-"
    # Let over-long URLs through to the emulator, which answers them as HubSpot does (414).
    config.h11_max_incomplete_size = SERVER_REQUEST_ROOM
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        binds = await nursery.start(serve, emu.app, config)
        print(
            f"{name} emulator on {', '.join(binds)} (admin API under /_emulator/)", file=sys.stderr
        )
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
            await emu.run_webhooks(client)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    """Runs this module on its own: `python -m crmsync.cli.emulator hubspot --port 8765`
    (or `pipedrive …`)."""
    parser = argparse.ArgumentParser(prog="crmsync")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["emulator", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
