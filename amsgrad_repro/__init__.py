"""amsgrad_repro: reproduce Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018).

Usage::

    python -m amsgrad_repro online        # Adam vs AMSGrad on the online counterexample
    python -m amsgrad_repro stochastic    # ... and on the stochastic one
    tensorboard --logdir logs

Library entry points: :mod:`amsgrad_repro.problems` (f_t, streams, x*), :mod:`amsgrad_repro.trial` (the
torchbearer Trial), :mod:`amsgrad_repro.experiment` (one invocation: run directory, events, summary).
"""

__version__ = "0.1.0"
