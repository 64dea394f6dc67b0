"""``python -m amsgrad_repro ...`` is the same as the ``amsgrad-repro`` console script (:func:`entry`)."""

import sys


def entry() -> int:
    """Import the command line and run it. Ctrl-C while the imports are still running (torch's take a second
    or two) ends quietly with 130, as it does later, instead of a page of import traceback."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("amsgrad-repro: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
