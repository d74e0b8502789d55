"""localstripe (PyPI, a stateful Stripe stand-in) for the integration tests.

Usage: localstripe_server.py PORT

Unlike `localstripe --port N`, this binds 127.0.0.1 only and keeps its state
in memory: localstripe 1.15.10 otherwise loads and rewrites
/tmp/localstripe.pickle after every change, which would leak state between
tests (and between concurrent servers). `tests/it/localstripe.rs` starts it;
`scripts/test` installs localstripe into .test-services/venv.
"""

import logging
import sys

from aiohttp import web

from localstripe import resources, server


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: localstripe_server.py PORT")
    port = int(sys.argv[1])

    # No pickle: every server starts empty and writes nothing to disk.
    resources.Store.try_load_from_disk = lambda self: None
    resources.Store.dump_to_disk = lambda self: None

    # Webhook deliveries and errors go to stderr (the test keeps it in a log).
    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler())

    web.run_app(
        server.app,
        host="127.0.0.1",
        port=port,
        access_log=logger,
        print=lambda *args: None,
    )


if __name__ == "__main__":
    main()
