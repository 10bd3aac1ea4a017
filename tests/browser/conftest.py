"""Browser tests run only through `make test-browser` (FDPKIT_BROWSER=1): they need Debian's
`chromium` and Playwright's Python package, and start a JupyterLab server."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FDPKIT_BROWSER", "") == "1":
        return
    skip = pytest.mark.skip(reason="browser test: run `make test-browser` (needs chromium and playwright)")
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
