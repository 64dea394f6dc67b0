"""Issue 24: the paper's optimizers keep the conventions a ``torch.optim`` user relies on. Each check is written
after pytorch's own optimizer tests (``test/test_optim.py``) and, where torch has the same feature, run on
``torch.optim.Adam``/``AdamW`` too, as a control: what torch does is what ours must do."""

import copy
import functools

import numpy as np
import pytest
import torch

from amsgrad_repro.algorithms import AdamNC, AdaptiveMoment, AMSGrad
from amsgrad_repro.synthetic.config import ProblemConfig
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.torchloop import TorchRun, simulate_torch

OURS = {
    "paper": functools.partial(AMSGrad, variant="paper"),
    "pytorch": functools.partial(AMSGrad, variant="pytorch"),
    "corrected": functools.partial(AMSGrad, variant="corrected"),
    "adam": AdaptiveMoment,
    "adamnc": AdamNC,
    "paper-scheduled": functools.partial(AMSGrad, lr_schedule="sqrt", beta1_schedule="exp", beta1_decay=0.99),
}


def _model(seed: int = 0, complex_: bool = False) -> torch.nn.ParameterList:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    params = [torch.randn(s, generator=g, dtype=torch.complex64 if complex_ else torch.float32) for s in shapes]
    return torch.nn.ParameterList([torch.nn.Parameter(p) for p in params])


def _grads(step: int, params, complex_: bool = False):
    g = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _run(make, steps: int = 12, complex_: bool = False, model=None):
    model = model if model is not None else _model(complex_=complex_)
    opt = make(model.parameters())
    trace = []
    for t in range(steps):
        _grads(t, model)
        opt.step()
        trace.append([p.detach().clone() for p in model])
    return trace, opt, model


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True))


# --- weight decay, maximize: against torch's Adam and AdamW, bit for bit, at every step ----------------------


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_and_maximize_are_torchs(decoupled, maximize):
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05, maximize=maximize)
    ours, _, _ = _run(lambda p: AMSGrad(p, variant="pytorch", decoupled_weight_decay=decoupled, **kw))
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    theirs, _, _ = _run(lambda p: torch_cls(p, amsgrad=True, **kw))
    assert _equal(ours, theirs)
    ours, _, _ = _run(lambda p: AdaptiveMoment(p, decoupled_weight_decay=decoupled, **kw))
    theirs, _, _ = _run(lambda p: torch_cls(p, **kw))
    assert _equal(ours, theirs)
    plain, _, _ = _run(lambda p: AdaptiveMoment(p, lr=1e-2, betas=(0.9, 0.99)))
    assert not _equal(ours, plain)  # the options did something


@pytest.mark.parametrize("name", OURS)
def test_weight_decay_moves_every_variant_toward_zero(name):
    """L2 and decoupled decay on a zero gradient: each variant shrinks |x| and never moves it past 0."""
    for decoupled in (False, True):
        model = _model()
        opt = OURS[name](model.parameters(), lr=1e-2, weight_decay=0.5, decoupled_weight_decay=decoupled)
        before = [p.detach().abs().clone() for p in model]
        for _ in range(5):
            for p in model:
                p.grad = torch.zeros_like(p)
            opt.step()
        for b, p in zip(before, model, strict=True):
            assert torch.all(p.detach().abs() <= b) and torch.any(p.detach().abs() < b)


# --- foreach: the multi-tensor path is the loop, bit for bit ----------------------------------------------------


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("complex_", [False, True])
def test_foreach_is_the_loop_bit_for_bit(name, complex_):
    kw = dict(lr=1e-2, weight_decay=0.01)
    loop, _, _ = _run(lambda p: OURS[name](p, foreach=False, **kw), complex_=complex_)
    multi, _, _ = _run(lambda p: OURS[name](p, foreach=True, **kw), complex_=complex_)
    assert _equal(loop, multi)
    # the control: torch's own Adam makes the same promise
    loop, _, _ = _run(lambda p: torch.optim.Adam(p, foreach=False, amsgrad=True, **kw), complex_=complex_)
    multi, _, _ = _run(lambda p: torch.optim.Adam(p, foreach=True, amsgrad=True, **kw), complex_=complex_)
    assert _equal(loop, multi)


def test_foreach_with_parameters_at_different_steps_takes_the_loop():
    """A parameter whose gradient was None at one step is a step behind the others: still the loop's numbers."""
    runs = []
    for foreach in (False, True):
        model = _model()
        opt = AMSGrad(model.parameters(), lr=1e-2, beta1_schedule="exp", beta1_decay=0.9, foreach=foreach)
        for t in range(6):
            _grads(t, model)
            if t == 2:
                model[1].grad = None
            opt.step()
        runs.append([p.detach().clone() for p in model])
    assert _equal([runs[0]], [runs[1]])


# --- ε = 0: a coordinate whose gradient has always been 0 does not move (no 0/0) ------------------------------


@pytest.mark.parametrize("name", ["paper", "adamnc", "paper-scheduled"])
def test_a_parameter_with_zero_gradients_stays_put_and_finite(name):
    emb = torch.nn.Embedding(5, 3, padding_idx=0)
    start = emb.weight.detach().clone()
    opt = OURS[name](emb.parameters(), lr=1e-2)  # ε = 0: the paper's form and AdamNC's default
    assert opt.param_groups[0]["eps"] == 0.0
    for t in range(4):
        opt.zero_grad()
        emb(torch.tensor([0, 1, 2, t % 5])).sum().backward()
        opt.step()
    assert torch.isfinite(emb.weight).all()
    assert torch.equal(emb.weight[0], start[0])  # the padding row: its gradient is 0 from the start
    assert not torch.equal(emb.weight[1], start[1])
    # the control: torch's Adam with ε = 0 makes that row NaN (0/0); ours is the fix the issue asked for
    emb2 = torch.nn.Embedding(5, 3, padding_idx=0)
    opt2 = torch.optim.Adam(emb2.parameters(), lr=1e-2, eps=0.0)
    emb2(torch.tensor([1, 2])).sum().backward()
    opt2.step()
    assert torch.isnan(emb2.weight[0]).all()


@pytest.mark.parametrize("spec", ["amsgrad-paper", "adamnc", "adam,eps=0"])
def test_the_fused_engine_agrees_when_the_second_moment_is_zero(spec):
    """A stochastic problem whose common slope is 0: v = 0 until the first rare step. Before, the fused engine
    gave NaN (0/0); both engines now leave x where it is until then, and agree at every step, one run and many
    (the lane kernel)."""
    configs = [ProblemConfig("stochastic", seed=s, common_coef=0.0) for s in range(3)]
    problems = [c.make() for c in configs]

    def fused_xs(n: int) -> np.ndarray:
        got = []
        runs = [FusedRun.of(spec, problem=i % 3, lr=1e-2) for i in range(n)]
        simulate(problems, runs, 400, log_every=1, on_log=lambda ts, x, r: got.append(np.array(x)))
        return np.concatenate(got, axis=1)

    from amsgrad_repro.optimizers import resolve

    choice = resolve(spec, {"lr": 1e-2})
    runs = [TorchRun(c.functions()) for c in configs]
    torch_result = simulate_torch(lambda params, **_: choice.build(params), {}, runs, [{}], 400, 1, layout="optimizers")
    x = torch_result.logged[1].astype(np.float32)  # logged as float64 copies of the float32 iterates
    one = fused_xs(3)
    # the engines agree to torch's CPU sqrt (±1 ulp, docs/engines.md): 1e-6 as in tests/test_fused.py
    assert np.isfinite(one).all() and np.allclose(one, x, rtol=0, atol=1e-6)
    assert (x[:, :3] == 0).all()  # the first steps (common, slope 0) left every run at x0 = 0, not NaN
    many = fused_xs(120)  # 120 runs: the lane kernel, where it takes them
    assert np.isfinite(many).all() and np.allclose(many[:3], x, rtol=0, atol=1e-6)


# --- complex and sparse: refused or handled before anything is touched --------------------------------------


@pytest.mark.parametrize("name", OURS)
def test_complex_parameters_are_their_real_view(name):
    """As torch's Adam: a complex model steps exactly as the same model written as view_as_real."""
    trace_c, _, _ = _run(lambda p: OURS[name](p, lr=1e-2), complex_=True)
    model = _model(complex_=True)
    real = torch.nn.ParameterList([torch.nn.Parameter(torch.view_as_real(p.detach()).clone()) for p in model])
    opt = OURS[name](real.parameters(), lr=1e-2)
    for t, expected in enumerate(trace_c):
        _grads(t, model)
        for r, c in zip(real, model, strict=True):
            r.grad = torch.view_as_real(c.grad).clone()
        opt.step()
        assert all(torch.equal(torch.view_as_real(e), r) for e, r in zip(expected, real, strict=True))


@pytest.mark.parametrize("make", [*OURS.values(), torch.optim.Adam])
def test_a_sparse_gradient_is_refused_before_anything_is_stepped(make):
    dense = torch.nn.Parameter(torch.ones(3))
    emb = torch.nn.Embedding(4, 2, sparse=True)
    opt = make([dense, *emb.parameters()], lr=1e-2)
    dense.grad = torch.ones(3)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert torch.equal(dense, torch.ones(3))  # nothing moved (torch's Adam too)
    if make is not torch.optim.Adam:
        assert not opt.state  # and ours made no state either (torch's has made the dense parameter's)


# --- lr: 0 accepted, a tensor read at every step -----------------------------------------------------------


@pytest.mark.parametrize("make", [*OURS.values(), lambda p, **k: torch.optim.Adam(p, **k)])
def test_lr_zero_is_accepted_and_moves_nothing(make):
    model = _model()
    start = [p.detach().clone() for p in model]
    opt = make(model.parameters(), lr=0.0)
    _grads(0, model)
    opt.step()
    assert _equal([start], [[p.detach() for p in model]])


def test_a_tensor_lr_is_read_at_every_step_and_a_wrong_one_gets_torchs_message():
    lr = torch.tensor(1e-2)
    trace_t, opt, _ = _run(lambda p: AMSGrad(p, lr=lr, variant="pytorch"), steps=3)
    trace_f, _, _ = _run(lambda p: AMSGrad(p, lr=1e-2, variant="pytorch"), steps=3)
    assert _equal(trace_t, trace_f)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)  # fills the tensor in place
    assert opt.param_groups[0]["lr"].item() == pytest.approx(5e-3) and sched.get_last_lr()
    for make in (functools.partial(AMSGrad, variant="pytorch"), torch.optim.Adam):
        with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
            make([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor([1e-2, 1e-3]))


# --- state_dict: torch's Adam checkpoint loads into variant="pytorch"; anything else is refused at load --------


def test_a_torch_adam_checkpoint_continues_in_amsgrad_pytorch_bit_for_bit():
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    _, torch_opt, torch_model = _run(lambda p: torch.optim.Adam(p, amsgrad=True, **kw), steps=5)
    ours_model = copy.deepcopy(torch_model)
    ours = AMSGrad(ours_model.parameters(), variant="pytorch", lr=1.0)  # the checkpoint's lr is taken
    ours.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # as from torch.load: its own tensors
    assert ours.param_groups[0]["lr"] == 1e-2 and ours.param_groups[0]["lr_schedule"] == "constant"
    for t in range(5, 10):
        for model, opt in ((torch_model, torch_opt), (ours_model, ours)):
            _grads(t, model)
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(torch_model, ours_model, strict=True))
    # and our own state_dict round-trips, deep-copies and pickles as before
    again = AMSGrad(copy.deepcopy(ours_model).parameters(), variant="pytorch")
    again.load_state_dict(copy.deepcopy(ours.state_dict()))
    assert again.state_dict()["param_groups"] == ours.state_dict()["param_groups"]


def test_a_state_dict_of_ours_from_before_these_options_still_loads():
    """Saved before weight_decay, maximize, foreach and tensor steps: int step, float Π β1s, fewer group keys."""
    make = functools.partial(AMSGrad, lr=1e-2, beta1_schedule="exp", beta1_decay=0.9)
    _, opt, model = _run(make, steps=3)
    old = copy.deepcopy(opt.state_dict())
    for g in old["param_groups"]:
        for key in ("weight_decay", "decoupled_weight_decay", "maximize", "foreach"):
            del g[key]
    for st in old["state"].values():
        st["step"], st["beta1_product"] = int(st["step"].item()), st["beta1_product"].item()
    again = make(copy.deepcopy(model).parameters())
    again.load_state_dict(old)
    assert (
        again.param_groups[0]["weight_decay"] == 0.0 and again.state_dict()["state"][0]["step"].dtype == torch.float64
    )
    _grads(3, model)
    opt.step()  # one more step of the original, and the same step of the restored one: equal
    params = list(again.param_groups[0]["params"])
    for p, q in zip(params, model, strict=True):
        p.grad = q.grad.clone()
    again.step()
    assert all(torch.equal(p, q) for p, q in zip(params, model, strict=True))


@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        (lambda p: torch.optim.Adam(p, amsgrad=True), lambda p: AMSGrad(p, variant="paper"), "variant='pytorch'"),
        (lambda p: torch.optim.Adam(p), lambda p: AMSGrad(p, variant="pytorch"), "Adam\\(amsgrad=True\\)'s loads"),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: AdamNC(p), "lack"),
        (lambda p: torch.optim.Adam(p, amsgrad=True), lambda p: AMSGrad(p, variant="pytorch", lr_schedule="sqrt"),
         "constant schedules"),
    ],
)  # fmt: skip
def test_a_foreign_state_dict_is_refused_at_load_in_one_line(source, target, says):
    _, src, model = _run(source, steps=2)
    opt = target(model.parameters())
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=says):
        opt.load_state_dict(src.state_dict())
    assert opt.state_dict() == before  # nothing was taken


# --- torch.compile: the step compiles once, not once per step ---------------------------------------------


@pytest.mark.parametrize("name", ["paper-scheduled", "adamnc", "pytorch"])
def test_a_compiled_step_does_not_recompile_as_the_step_count_grows(name):
    """The per-step state (the step, Π β1s) is a tensor, so nothing the graph is specialised on changes from
    step to step. Counted with dynamo's own frame counters (the "eager" backend: no C++ compiler needed)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    def compiled_frames(steps: int) -> int:
        torch._dynamo.reset()
        counters.clear()
        model = _model()
        opt = OURS[name](model.parameters(), lr=1e-2)
        step = torch.compile(opt.step, backend="eager")
        for t in range(steps):
            _grads(t, model)
            step()
        return sum(counters["frames"].values()), [p.detach().clone() for p in model]

    few, _ = compiled_frames(4)
    many, params = compiled_frames(12)
    assert many == few
    eager, _, _ = _run(lambda p: OURS[name](p, lr=1e-2), steps=12)
    for a, b in zip(params, eager[-1], strict=True):
        torch.testing.assert_close(a, b)
