"""The paper's synthetic experiments (Section 5, Figure 1): the one-dimensional online and stochastic
counterexamples, Adam against AMSGrad, as torchbearer Trials or through the fused compiled engine.

Usage::

    python -m amsgrad_repro online                       # 10 M steps, Adam → +1, AMSGrad → −1
    python -m amsgrad_repro stochastic --seed 0:8
    python -m amsgrad_repro phase                        # where in (β1, β2) Adam fails

    from amsgrad_repro.synthetic.experiment import Config, ProblemConfig, run
    summary = run(Config(ProblemConfig("online"), steps=20_000, run_name="demo"))

Modules, bottom up: :mod:`.problems` (f_t, the streams, x*, the presets; no torchbearer), :mod:`.config` (what a
run and an invocation are), :mod:`.trial` (loss, metrics, callbacks, the Trial) and :mod:`.fused` (the compiled
engine), :mod:`.engines` (how runs execute: in this process or on Ray), :mod:`.experiment` (one invocation: the
run directory, summary.json, the table) and :mod:`.phase` (the (β1, β2) heat maps, another invocation).
"""
