"""`crmsync ctl watch`: the status refreshed every few seconds, with a progress bar per object
sync (a live view in a terminal; with --json, one status object per line)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from crmsync.cli.ctl.exits import EXIT_OK
from crmsync.cli.ctl.parsing import reply_timeout
from crmsync.cli.ctl.render import (
    WATCH_HEADERS,
    budget_line,
    console_for,
    duration,
    iso,
    shown_states,
    table,
)
from crmsync.control import protocol as p
from crmsync.control.client import ControlClient, ControlUnavailable
from crmsync.control.views import StatusView


def watch_view(st: StatusView, width: int = 120) -> Any:
    """One frame of `watch`: the status with a progress bar per object sync (more compact
    below 110 columns)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    narrow = width < 110
    parts: list[Any] = [Text.from_markup(
        f"[bold]crmsync {st.version}[/bold]  up {duration(st.uptime_seconds)}  "
        f"webhooks {st.webhooks.accepted}  {budget_line(st)}  "
        f"[dim]{iso(st.now)}[/dim]")]
    for c in st.connections:
        t = table(f"{c.name}: {c.state}" + (f" — {c.reason}" if c.reason else ""),
                   collapse_padding=narrow, pad_edge=not narrow)
        t.add_column("object", no_wrap=True, max_width=24 if narrow else None)
        t.add_column("initial sync", width=8 if narrow else 12)
        t.add_column("", no_wrap=True)
        states = shown_states(c.objects)
        for s in states:
            t.add_column(WATCH_HEADERS[s], justify="right", no_wrap=True, min_width=5)
        for o in c.objects:
            done = o.running or o.phase == "complete"
            total = max(o.total, o.done, 1)
            bar = ProgressBar(total=total, completed=total if done else o.done,
                              width=8 if narrow else 12)
            eta = duration(o.eta_seconds) if o.eta_seconds is not None else ""
            if done:
                label = "in sync"
            elif narrow:
                label = f"{o.percent or 0:.0f}%" + (f" {eta}" if eta else "")
            else:
                label = f"{o.phase} {o.percent or 0:.0f}%" + (f" {eta} left" if eta else "")
            t.add_row(f"{o.hub_object} ⇄ {o.app_object}", bar, label,
                      *(f"{o.counts.get(s, 0):,}" for s in states))
        parts.append(t)
    return Group(*parts)


def watch(args: argparse.Namespace, path: Path, out: TextIO, err: TextIO,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Refresh the status every `--interval` seconds (a new connection each time, so a
    daemon restart is survived). With --json: one status object per line."""
    req = p.Status(connection=args.connection)
    timeout = reply_timeout(args)

    def frames() -> Iterator[Any]:
        n = 0
        while not args.count or n < args.count:
            if n:
                sleep(args.interval)
            n += 1
            try:
                with ControlClient(path, timeout) as c:
                    yield c.request(req)
            except ControlUnavailable as exc:
                yield exc

    if args.json:
        for frame in frames():
            if isinstance(frame, ControlUnavailable):
                err.write(f"crmsync ctl: {frame}\n")
                continue
            out.write(msgspec.json.encode(frame).decode() + "\n")
            out.flush()
        return EXIT_OK
    from rich.live import Live
    from rich.text import Text

    console = console_for(out)
    with Live(Text("connecting…"), console=console, auto_refresh=False,
              transient=False) as live:
        try:
            for frame in frames():
                if isinstance(frame, ControlUnavailable):
                    live.update(Text(f"daemon unreachable ({frame.message}); retrying…",
                                     style="red"), refresh=True)
                elif isinstance(frame, p.ErrorReply):
                    live.update(Text(f"{frame.code}: {frame.message}", style="red"),
                                refresh=True)
                else:
                    live.update(watch_view(frame, console.width), refresh=True)
        except KeyboardInterrupt:
            pass
    return EXIT_OK
