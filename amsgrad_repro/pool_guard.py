"""Ties the ``--jobs`` forkserver's life to the driver's: imported there, and only there.

Usage: none by hand. :class:`amsgrad_repro.pool.Pool` lists this module first in the forkserver's preload, so the
forkserver imports it when it starts. Its import asks Linux to SIGKILL the importing process when its parent ends
(``PR_SET_PDEATHSIG``); the forkserver's parent is the driver. The workers ask the same about the forkserver, so a
driver killed outright (SIGKILL, which no handler sees) takes the forkserver and every worker with it. Without this,
the forkserver outlived a killed driver and kept its workers running (found by hand, 2026-11-30).

Importing this module anywhere else would tie that process to its own parent: do not.
"""

import ctypes
import os
import signal
import sys

if sys.platform.startswith("linux"):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the driver was gone before the line above took effect
        os._exit(0)
