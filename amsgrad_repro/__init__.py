"""amsgrad_repro: reproduce Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018).

Usage::

    python -m amsgrad_repro online        # Adam vs AMSGrad on the online counterexample
    python -m amsgrad_repro stochastic    # ... and on the stochastic one
    tensorboard --logdir logs

The package, top down (docs/development.md; import-linter checks that arrows only point down):

- faces: :mod:`.cli`, :mod:`.plot`, :mod:`.bench`;
- two wings of the same shape: :mod:`.synthetic` (Figure 1: the counterexamples) and :mod:`.realdata` (Figure 2:
  MNIST, CIFAR-10), each with ``config``, ``trial``, ``engines`` and ``experiment`` modules;
- the run spine: :mod:`.runs`, :mod:`.callbacks`, :mod:`.cluster`;
- the ground: :mod:`.values`, :mod:`.optimizers`, :mod:`.algorithms`.
"""

__version__ = "0.1.0"
