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
            nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
            nn.ZeroPad2d(_SAME_6),
            nn.Conv2d(64, 64, 6),
            nn.ReLU(),
            nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
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

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return self.classifier(self.features(x))


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
