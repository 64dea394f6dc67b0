"""The paper's real-data experiments (Section 5, Figure 2): logistic regression and a one-hidden-layer network on
MNIST, CIFARNET on CIFAR-10, Adam against AMSGrad, as torchbearer Trials.

Usage::

    python -m amsgrad_repro logreg        # embedded MNIST subset when no full MNIST is found
    python -m amsgrad_repro mlp --data fashion-mnist --beta2 0.99 0.999 --seed 0:3
    python -m amsgrad_repro cifarnet --data-dir ~/datasets

Modules, bottom up: :mod:`.data` (files → arrays; never downloads), :mod:`.models` (plain torch),
:mod:`.trial` (batches, loss, callbacks, the Trial), :mod:`.experiment` (one invocation: the grid, the run
directory, summary.json, the table).
"""
