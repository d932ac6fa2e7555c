"""Real Chromium (Debian's), a real JupyterLab and real servers for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Lab, Page
from tests.support import ServerProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder drives Chromium."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def browser_context(browser: object) -> Iterator[object]:
    """One context for the session: its HTTP cache makes JupyterLab load faster."""
    context = browser.new_context(viewport={"width": 1280, "height": 820})  # type: ignore[attr-defined]
    yield context
    context.close()


@pytest.fixture
def new_page(browser_context: object) -> Iterator[object]:
    """Factory of recorded pages, closed after the test."""
    pages: list[Page] = []

    def make() -> Page:
        page = Page(browser_context)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab for the session."""
    proc = Lab(tmp_path_factory.mktemp("lab")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def board_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A crowdsource server (SQLite) for the browser tests alone."""
    workdir = tmp_path_factory.mktemp("browser-server")
    proc = ServerProcess(str(workdir / "crowdsource.db"), workdir).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests save screenshots: tests/artifacts/, or docs/img/ (the README's) when
    CROWDSOURCE_SCREENSHOTS=docs."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def people(board_server: ServerProcess) -> dict[str, dict]:
    """A host and three participants on the shared browser-test server."""
    from tests.browser.api import Api

    api = Api(board_server.url)
    return {name: api.register(name) for name in ("host", "alice", "bob", "carol")}
