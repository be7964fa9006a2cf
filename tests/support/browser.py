"""Settings of the browser tests (Playwright's Chromium): its flags, and where screenshots and traces go."""

from tests.support.paths import REPO

ARTIFACTS = REPO / "test-artifacts"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
