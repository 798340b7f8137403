"""Screenshot the UI pages a DBA opens into docs/screenshots/ (headless Chromium).

Start the UI first (`make demo`, then `make ui`, which serves http://127.0.0.1:3000), then:

    .venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:3000] [--out docs/screenshots]

The same approach as render_lineage.py (Debian's `chromium`, driven over the DevTools
protocol): load each page at a fixed window size, wait until it shows what it should
and nothing is loading, capture the window. `Browser` is also what the UI's browser
test uses (sizeagg_pipeline_tests/e2e/test_ui_demo.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render_lineage import CHROMIUM_FLAGS, DevTools, _fit_width, _page_websocket, _stop_group, find_chromium

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1600, 1000


@dataclass(frozen=True)
class Page:
    name: str  # the PNG's name
    path: str  # the UI route
    shows: Sequence[str]  # texts the page must show before it is captured
    scroll_to: str | None = None  # scroll the element with exactly this text to the top first


PAGES = [
    Page("catalog", "/assets", ["database_size_weekly", "capacity_forecast", "aggregation_session"]),
    Page(
        "weekly-asset",
        "/assets/database_size_weekly",
        ["Top 10 growth, weekly — chart", "Top 10 growth, weekly — table"],
        scroll_to="Metadata",
    ),
    Page(
        "checks-tab",
        "/assets/database_size_weekly?view=checks&checkDetail=data_count_matches_raw",
        ["data_count_matches_raw", "Execute"],
    ),
    Page("forecast", "/assets/capacity_forecast", ["days left", "capacity_forecasts"], scroll_to="Metadata"),
    Page("automation", "/automation", ["aggregation_tick_daily", "aggregation_gate"]),
    Page(
        "tick-schedule", "/locations/sizeagg/schedules/aggregation_tick_daily", ["Next tick", "Asia/Shanghai"]
    ),
]

# Is an element with this text inside a box that cuts it off? (scrollWidth beyond clientWidth)
CLIPPED = """
((text) => {
  const cell = [...document.querySelectorAll('th, td')].find((e) => e.innerText.trim() === text);
  if (!cell) return 'missing';
  const table = cell.closest('table');
  for (let box = table; box && box !== document.body; box = box.parentElement) {
    const style = getComputedStyle(box);
    const cuts = ['hidden', 'auto', 'scroll', 'clip'].includes(style.overflowX);
    if (cuts && box.scrollWidth > box.clientWidth + 1) return 'clipped by ' + box.tagName;
  }
  return table.getBoundingClientRect().right <= innerWidth ? 'fits' : 'wider than the window';
})(%s)
"""
SHOWN = "document.body.innerText.includes(%s)"
# Rows still waiting for their data draw skeletons and spinners instead.
PLACEHOLDERS = (
    "[...document.querySelectorAll('[class]')].some((e) => /skeleton|spinner/i.test(e.getAttribute('class')))"
)
SCROLL = """
((text) => {
  const found = [...document.querySelectorAll('h1, h2, h3, h4, div, span, td')]
    .filter((e) => e.innerText && e.innerText.trim() === text).pop();
  if (found) found.scrollIntoView({block: 'start'});
  return !!found;
})(%s)
"""


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, tools: DevTools, loop: asyncio.AbstractEventLoop) -> None:
        self.tools = tools
        self.loop = loop

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def evaluate(self, expression: str) -> object:
        return self._run(self.tools.evaluate(expression))

    def open(self, url: str, shows: Sequence[str], timeout: float = 90.0) -> None:
        """Load `url` and wait until it shows every text of `shows` and nothing is loading."""
        self._run(
            self.tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
        )
        self._run(self.tools.call("Page.navigate", url=url))
        self.wait_for(shows, timeout)

    def wait_for(self, shows: Sequence[str], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = [t for t in shows if not self.evaluate(SHOWN % json.dumps(t))]
            loading = self.evaluate(SHOWN % json.dumps("Loading")) or self.evaluate(PLACEHOLDERS)
            if not missing and not loading:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{url_of(self)} does not show {missing or 'a finished page'} after {timeout:.0f} s"
                )
            time.sleep(0.5)
        time.sleep(1.5)  # images and late fragments

    def scroll_to(self, text: str) -> bool:
        """Scroll the innermost element that reads exactly `text` to the top of its pane."""
        found = bool(self.evaluate(SCROLL % json.dumps(text)))
        time.sleep(1.0)
        return found

    def clipped(self, header: str) -> str:
        """'fits', or how the table whose header cell reads `header` is cut off."""
        return str(self.evaluate(CLIPPED % json.dumps(header)))

    def screenshot(self) -> bytes:
        shot = self._run(self.tools.call("Page.captureScreenshot", format="png"))
        return base64.b64decode(shot["data"])


def url_of(browser: Browser) -> str:
    return str(browser.evaluate("location.href"))


@contextmanager
def browser() -> Iterator[Browser]:
    """Headless Chromium in its own process group, stopped on exit."""
    import websockets  # shipped with dagster-webserver (uvicorn[standard])

    with tempfile.TemporaryDirectory(prefix="sizeagg-browser-", ignore_cleanup_errors=True) as tmp:
        process = subprocess.Popen(
            [
                find_chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp}",
                f"--window-size={WIDTH},{HEIGHT}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        loop = asyncio.new_event_loop()
        try:
            socket = loop.run_until_complete(websockets.connect(_page_websocket(Path(tmp)), max_size=None))
            try:
                yield Browser(DevTools(socket), loop)
            finally:
                loop.run_until_complete(socket.close())
        finally:
            loop.close()
            _stop_group(process)


def capture(url: str, out: Path, pages: Sequence[Page] = PAGES) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with browser() as page:
        for spec in pages:
            page.open(url + spec.path, spec.shows)
            if spec.scroll_to:
                page.scroll_to(spec.scroll_to)
            path = out / f"{spec.name}.png"
            path.write_bytes(_fit_width(page.screenshot(), WIDTH))
            written.append(path)
            print(f"screenshots: {url}{spec.path} -> {path} ({path.stat().st_size} bytes)")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the running Dagster UI")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    try:
        capture(args.url.rstrip("/"), args.out)
    except OSError as exc:
        print(
            f"screenshots: cannot reach the UI at {args.url} ({exc}); start it with `make ui`",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
