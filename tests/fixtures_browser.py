"""The real browser of the dashboard tests: Debian's chromium driven by Playwright.

Playwright's own browser download cannot work here, so it launches the Debian binary, headless,
with the switches that keep Chromium off the closed network (background updates, component
downloads) and working in a container (no sandbox, no GPU, no /dev/shm).
"""

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run browser tests")
    # Playwright's sync API runs an event loop in this thread; Django would otherwise refuse ORM
    # calls from it (the live server itself runs in its own thread).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
