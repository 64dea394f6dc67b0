"""The three models of the paper's Section 5 (Figure 2), in plain torch: no torchbearer needed here.

Usage::

    from amsgrad_repro.realdata.models import build_model, to_input
    model = build_model("mlp", (1, 28, 28), seed=0)     # the same seed gives the same initial weights
    logits = model(to_input(x_uint8_batch))            # (B, 10)

Every model takes images ``(B, C, H, W)`` scaled to [0, 1] by :func:`to_input` and returns 10 logits; the loss
is softmax cross-entropy (``torch.nn.functional.cross_entropy``, mean over the batch), as the paper's
"logistic regression" and "softmax" imply. Choices the paper leaves open:

- **Input scaling**: pixels / 255, nothing else (no mean subtraction, no augmentation). The paper says nothing;
  this is the most common choice for MNIST and keeps the three models comparable.
- **Initialisation**: torch's defaults (Kaiming-uniform weights with a = √5, uniform biases), drawn from a
  generator seeded by the run's seed, so every optimizer of a run starts from the same weights.

``forward`` accepts (and ignores) torchbearer's ``state`` keyword. torchbearer calls ``model(x, state=state)``
first and, when that raises TypeError, calls ``model(x)`` again: for a model without the keyword every
iteration paid an exception and a second call (measured: a quarter of an mlp iteration).
"""

from __future__ import annotations

import torch
from torch import nn

MODELS = ("logreg", "mlp", "cifarnet")
#: TensorFlow's SAME padding for a 6×6 kernel at stride 1: (left, right, top, bottom)
_SAME_6 = (2, 3, 2, 3)


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]."""
    return x.to(torch.float32).div_(255.0)


class LogisticRegression(nn.Sequential):
    """Multinomial logistic regression: flatten, one linear layer (C·H·W → 10).

    On 1×28×28 inputs: 784·10 + 10 = **7,850** parameters.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        c, h, w = shape
        super().__init__(nn.Flatten(), nn.Linear(c * h * w, 10))

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return super().forward(x)


class MLP(nn.Sequential):
    """The paper's feed-forward network: flatten, 100 ReLU units, 10 outputs (784 → 100 → 10 on MNIST).

    On 1×28×28 inputs: (784·100 + 100) + (100·10 + 10) = **79,510** parameters.
    """

    def __init__(self, shape: tuple[int, int, int], hidden: int = 100) -> None:
        c, h, w = shape
        super().__init__(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return super().forward(x)


class _BandLRN(torch.autograd.Function):
    """b = x · d^(−β), d = k + s · band(x²); the gradient written out so that the power is taken once::

        ∂L/∂x = g · d^(−β) − 2βs · x · band(g · b / d)           (band is symmetric: Σ over the same window)

    autograd of the forward would take a second power, d^(−β−1), in the backward pass (a sixth of the LRN)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, band: torch.Tensor, s: float, beta: float, k: float) -> torch.Tensor:
        d = torch.matmul((x * x).movedim(1, -1), band).movedim(-1, 1).mul_(s).add_(k)  # k + s · Σ x_{c'}²
        r = d.pow(-beta)  # d^(−β)
        b = x * r
        ctx.save_for_backward(x, band, d, r, b)
        ctx.s, ctx.beta = s, beta
        return b

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, band, d, r, b = ctx.saved_tensors
        window = torch.matmul((g * b).div_(d).movedim(1, -1), band).movedim(-1, 1)  # band(g · b / d)
        return g * r - window.mul_(x).mul_(2 * ctx.beta * ctx.s), None, None, None, None


class ChannelLRN(nn.Module):
    """Local response normalisation across channels, TensorFlow's ``lrn(depth_radius=r, bias=k, alpha=a/n,
    beta=β)`` and torch's ``LocalResponseNorm(n = 2r + 1, alpha=a, beta=β, k=k)``::

        b_c = x_c · (k + a/n · Σ_{|c' − c| ≤ r} x_{c'}²)^(−β)          (channels outside 0…C−1 count as 0)

    The windowed sum is one matmul of the squares with a 0/1 band matrix (C × C) over the channel axis, the
    power is taken once (``x · d^(−β)``, not ``x / d^β``), and the backward pass is written out
    (:class:`_BandLRN`). torch's module pads a 5-D copy of the squares, average-pools it, divides, and lets
    autograd take a second power: the same function, equal to it within float32 rounding (tested: forward and
    gradient within 4e-6 relative, and torch's ``gradcheck`` in float64), about 3× its speed forward and
    backward on CIFARNET's 128×64×16×16 (its two LRNs were 40 % of an iteration). The band matmul reads the
    channel axis last, which is how a channels-last tensor already lies in memory.
    """

    def __init__(self, channels: int, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"the window must be odd (2r + 1), got {size}")
        c = torch.arange(channels)
        band = ((c[:, None] - c[None, :]).abs() <= size // 2).to(torch.float32)
        self.register_buffer("band", band, persistent=False)  # not a weight: rebuilt, never in a state_dict
        self.scale, self.beta, self.k = alpha / size, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BandLRN.apply(x, self.band.to(x.dtype), self.scale, self.beta, self.k)


class CIFARNet(nn.Module):
    """CIFARNET as the paper describes it: two convolutional layers with 64 channels and 6×6 kernels, each
    followed by 2×2 max-pooling and local response normalisation, then fully connected layers of 384 and 192
    units and dropout with keep-probability 0.5, then 10 logits::

        conv 6×6/64 (SAME) → ReLU → max-pool 2×2 → LRN → conv 6×6/64 (SAME) → ReLU → LRN → max-pool 2×2
        → flatten → FC 384 → ReLU → dropout 0.5 → FC 192 → ReLU → FC 10

    Choices the paper leaves open, taken from TF-slim's ``cifarnet`` (the model the name refers to):

    - **padding** SAME (stride 1, so H and W are kept): for the even 6×6 kernel, 2 pixels before and 3 after
      (left/top and right/bottom), as TensorFlow pads;
    - **pool and LRN order**: pool then LRN after the first convolution, LRN then pool after the second;
    - **LRN** = TensorFlow's ``lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)``, which is torch's
      ``LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1)`` (torch divides alpha by size);
    - **dropout** once, after FC 384, as in TF-slim (the paper says only "dropout");
    - **input**: channels and size come from the data, so 1×28×28 (Fashion-MNIST) works as well as 3×32×32.

    How it runs (the function is the one above; only the speed differs): the LRN is :class:`ChannelLRN`, and
    the convolutions' weights and activations are channels-last (NHWC), which oneDNN's CPU kernels and the LRN's
    channel matmul both read fastest. ``bench --models cifarnet`` measures an iteration against the two
    convolutions alone.

    Parameters: on 3×32×32, conv 6,976 + 147,520, FC 1,573,248 + 73,920 + 1,930 = **1,803,594**; on
    1×28×28, conv 2,368 + 147,520, FC 1,204,608 + 73,920 + 1,930 = **1,430,346**.
    """

    def __init__(self, shape: tuple[int, int, int], dropout: float = 0.5) -> None:
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.ZeroPad2d(_SAME_6),
            nn.Conv2d(c, 64, 6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            ChannelLRN(64, 9, alpha=0.001, beta=0.75, k=1.0),
            nn.ZeroPad2d(_SAME_6),
            nn.Conv2d(64, 64, 6),
            nn.ReLU(),
            ChannelLRN(64, 9, alpha=0.001, beta=0.75, k=1.0),
            nn.MaxPool2d(2),
        )
        flat = 64 * (h // 2 // 2) * (w // 2 // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 384),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(384, 192),
            nn.ReLU(),
            nn.Linear(192, 10),
        )

        self.features.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=torch.channels_last)))


_CLASSES = {"logreg": LogisticRegression, "mlp": MLP, "cifarnet": CIFARNet}


def build_model(name: str, shape: tuple[int, int, int], seed: int) -> nn.Module:
    """A fresh model whose initial weights are a pure function of ``seed`` (torch's global RNG is left as it
    was). Raises ValueError for an unknown name or images too small for the model."""
    if name not in _CLASSES:
        raise ValueError(f"unknown model {name!r}: choose from {', '.join(MODELS)}")
    if name == "cifarnet" and min(shape[1:]) < 4:
        raise ValueError(f"cifarnet needs images of at least 4×4, got {shape[1]}×{shape[2]}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _CLASSES[name](shape)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
