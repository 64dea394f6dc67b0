"""``python -m amsgrad_repro ...`` is the same as the ``amsgrad-repro`` console script."""

from .cli import main

raise SystemExit(main())
