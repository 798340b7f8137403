"""Screenshot the asset lineage graph of a running Dagster UI into docs/lineage.png.

Start the UI first (`make ui`, which serves http://127.0.0.1:3000), then:

    .venv/bin/python scripts/render_lineage.py [--url http://127.0.0.1:3000] [--out docs/lineage.png]

It asks the UI's GraphQL API for the asset groups and opens the global lineage page
with every group expanded (the `expanded` query parameter the UI itself writes) in
headless Chromium (Debian package `chromium`). Chromium's one-shot `--screenshot`
is not enough here: the UI fits the graph to the window from the *collapsed*
layout and never refits once the expanded one arrives, so the picture shows a
zoomed-in slice. The script therefore drives the same headless Chromium over the
DevTools protocol: wait until every asset is on the page, double-click the graph
background (the UI's own "zoom to fit"), and capture just the graph pane. The UI
must not show its first-visit dialog: the shipped dagster.yaml sets
`nux: enabled: false`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRAPH_QUERY = "{ assetNodes { assetKey { path } groupName repository { name location { name } } } }"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def graph_contents(url: str) -> tuple[list[str], list[str]]:
    """(group ids as the UI builds them, asset names), from the UI's GraphQL API.

    A group id is `global@global:<group>`, or `<repo>@<location>:<group>` when the UI
    groups per code location; both are passed, unknown ids are ignored.
    """
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": GRAPH_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        nodes = json.loads(response.read())["data"]["assetNodes"]
    groups: list[str] = []
    for node in nodes:
        repo, location = node["repository"]["name"], node["repository"]["location"]["name"]
        for group_id in (f"global@global:{node['groupName']}", f"{repo}@{location}:{node['groupName']}"):
            if group_id not in groups:
                groups.append(group_id)
    return groups, ["/".join(n["assetKey"]["path"]) for n in nodes]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("render-lineage: no chromium on PATH (Debian: apt-get install -y chromium)")


# The graph's own size (its <svg> at scale 1) and where the graph pane sits in the window.
MEASURE = """
(() => {
  const inner = [...document.querySelectorAll('div')]
    .find((d) => (d.getAttribute('style') || '').includes('transform-origin: left top'));
  const svg = inner && inner.querySelector('svg');
  if (!svg) return null;
  const pane = inner.parentElement.getBoundingClientRect();
  const drawn = svg.getBoundingClientRect();
  return {
    graph: [Number(svg.getAttribute('width')), Number(svg.getAttribute('height'))],
    pane: [pane.x, pane.y, pane.width, pane.height],
    drawn: [drawn.x, drawn.y, drawn.width, drawn.height],
    window: [innerWidth, innerHeight],
  };
})()
"""
MARGIN = 60  # CSS px around the graph, clear of the search bar over the pane's top
SHOWN = "document.body.innerText.includes(%s)"


class DevTools:
    """The few DevTools-protocol calls this script needs, over one page's websocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.next_id = 0

    async def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")


async def _capture(
    page_ws: str, page: str, assets: list[str], width: int, height: int, timeout: float
) -> bytes:
    import websockets  # shipped with dagster-webserver (uvicorn[standard])

    async with websockets.connect(page_ws, max_size=None) as socket:
        tools = DevTools(socket)

        async def load(w: int, h: int) -> dict:
            """Load the page at w×h; wait until the graph's size holds still for 2 s."""
            await tools.call(
                "Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False
            )
            await tools.call("Page.navigate", url=page)
            deadline = time.monotonic() + timeout
            seen, stable = None, 0
            while stable < 4:
                if time.monotonic() > deadline:
                    raise SystemExit(f"render-lineage: no settled lineage graph after {timeout:.0f} s")
                await asyncio.sleep(0.5)
                found = await tools.evaluate(MEASURE)
                size = found and found["graph"]  # type: ignore[index]
                stable = stable + 1 if size and size == seen else 0
                seen = size
            return found  # type: ignore[return-value]

        # First load: how big is the graph? Then a window whose graph pane holds all of it
        # at scale 1, where the UI's centring shows everything.
        first = await load(width, height)
        (gw, gh), (_, _, pw, ph), (ww, wh) = first["graph"], first["pane"], first["window"]
        need_w = max(width, int(gw + (ww - pw) + 2 * MARGIN))
        need_h = max(height, int(gh + (wh - ph) + 2 * MARGIN))
        final = await load(need_w, need_h) if (need_w, need_h) != (width, height) else first
        # Each node fetches its live data (latest event, checks) on its own: wait for them.
        deadline = time.monotonic() + timeout
        while await tools.evaluate(SHOWN % json.dumps("Loading")) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        missing = [a for a in assets if not await tools.evaluate(SHOWN % json.dumps(a))]
        if missing:
            raise SystemExit(f"render-lineage: the graph does not show {', '.join(missing)}")
        px, py, pw, ph = final["pane"]
        dx, dy, dw, dh = final["drawn"]
        left, top = max(px, dx - MARGIN), max(py, dy - MARGIN)
        right, bottom = min(px + pw, dx + dw + MARGIN), min(py + ph, dy + dh + MARGIN)
        clip = {"x": left, "y": top, "width": right - left, "height": bottom - top, "scale": 1}
        shot = await tools.call("Page.captureScreenshot", format="png", clip=clip)
        return base64.b64decode(shot["data"])


def _page_websocket(profile: Path, timeout: float = 30.0) -> str:
    """The DevTools websocket of Chromium's first page (its port is in DevToolsActivePort)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marker = profile / "DevToolsActivePort"
        if marker.exists() and marker.read_text().strip():
            port = marker.read_text().split()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    targets = json.loads(response.read())
            except OSError:
                targets = []
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.2)
    raise SystemExit("render-lineage: chromium did not open its DevTools port")


def _stop_group(browser: subprocess.Popen) -> None:
    """Stop Chromium and its helper processes (its own process group), then reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(browser.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            browser.poll()
            try:
                os.killpg(browser.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    browser.wait()


def render(url: str, out: Path, width: int, height: int, timeout: float, max_width: int) -> None:
    try:
        groups, assets = graph_contents(url)
    except OSError as exc:
        raise SystemExit(
            f"render-lineage: cannot reach the UI at {url} ({exc}); start it with `make ui`"
        ) from exc
    page = f"{url}/asset-groups?" + urllib.parse.urlencode({"expanded": ",".join(groups)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-lineage-", ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        browser = subprocess.Popen(
            [
                find_chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            png = asyncio.run(_capture(_page_websocket(profile), page, assets, width, height, timeout))
        finally:
            _stop_group(browser)
    out.write_bytes(_fit_width(png, max_width))
    print(f"render-lineage: {page} -> {out} ({out.stat().st_size} bytes)")


def _fit_width(png: bytes, max_width: int) -> bytes:
    """Scale a wide screenshot down to `max_width` pixels (README-sized), as a palette PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > max_width:
        image = image.resize(
            (max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the running Dagster UI")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lineage.png")
    parser.add_argument("--width", type=int, default=1600, help="smallest browser window width (CSS px)")
    parser.add_argument("--height", type=int, default=1000, help="smallest browser window height (CSS px)")
    parser.add_argument("--max-width", type=int, default=1400, help="width of the PNG, scaled down to it")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the graph")
    args = parser.parse_args()
    try:
        render(args.url.rstrip("/"), args.out, args.width, args.height, args.timeout, args.max_width)
    except OSError as exc:
        print(
            f"render-lineage: cannot reach the UI at {args.url} ({exc}); start it with `make ui`",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
