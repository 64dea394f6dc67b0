"""``python -m amsgrad_repro ...`` is the same as the ``amsgrad-repro`` console script (:func:`entry`)."""

import os
import signal


def _stop_while_importing(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM before the command line is loaded: nothing is written yet, so leave at once with one line.
    (Raising KeyboardInterrupt here could land inside a library's half-done import and leave it broken.)"""
    os.write(2, b"amsgrad-repro: interrupted\n")
    os._exit(128 + signum)


def entry() -> int:
    """Import the command line and run it. A signal while the imports run (torch's take a second or two) or while
    the arguments are parsed ends quietly with 130 or 143, as it does later, instead of a page of import
    traceback; :func:`amsgrad_repro.cli.main` installs its own handlers (signals.handle_signals) before it writes."""
    for s in (signal.SIGINT, signal.SIGTERM):  # until main() installs its own, once it starts writing
        signal.signal(s, _stop_while_importing)
    from .cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
