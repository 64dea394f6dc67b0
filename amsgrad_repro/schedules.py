"""The names of the schedules the paper's algorithms can follow, shared by the zoo and the algorithms.

Usage::

    from amsgrad_repro.schedules import BETA1_SCHEDULES, LR_SCHEDULES
    "sqrt" in LR_SCHEDULES                 # α_t = α/√t (Theorem 4's step size)

A module of its own, importing nothing, so that naming and checking a spec (:mod:`amsgrad_repro.optimizers`)
needs no torch; :mod:`amsgrad_repro.algorithms` says what each schedule computes.
"""

#: α_t: constant α, or α/√t
LR_SCHEDULES = ("constant", "sqrt")
#: β1t: constant β1, β1·λ^(t−1), or β1/t
BETA1_SCHEDULES = ("constant", "exp", "inverse")
#: β2t: constant β2, or AdamNC's 1 − 1/t
BETA2_SCHEDULES = ("constant", "adamnc")
