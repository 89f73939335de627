"""The deterministic baseline: a plain U-Net regression from the condition maps to the targets.

The approach of de Andres et al. (2024): one network maps the normalised condition maps
(``model.conditions``, default ``sz_y``, ``xray_sb``) straight to the normalised target maps (``gas_sigma``, ``dm_sigma``),
trained by mean squared error. It is trained by the same loop, on the same data and splits, saved
through the same checkpoints and evaluated through the same inference pipeline as the score model
(``model.kind: unet``): :class:`RegressionModel` duck-types what :mod:`cmpipe.model.training`
uses of a score_models ``ScoreModel``.

Architecture (:class:`UNet`): a 3x3 input convolution to ``nf`` channels; per resolution level
``i`` (``ch_mult[i] * nf`` channels) ``num_res_blocks`` residual conv blocks (GroupNorm, SiLU,
3x3 conv, twice, plus a 1x1 shortcut where the width changes), then a stride-2 convolution to
the next level; a bottleneck block; the mirror-image decoder (nearest-neighbour upsampling and a
3x3 conv, concatenation of the encoder's skip at that level, ``num_res_blocks`` blocks); and
GroupNorm, SiLU and a 1x1 convolution to the 2 target channels.

Output activation: none (identity). The targets are min-max normalised to [0, 1] with many
pixels exactly at the bounds (the log floor, the train extremes); a sigmoid would need infinite
logits there and its vanishing gradient slows their fit under MSE. The unbounded prediction is
clipped to [0, 1] before the inverse transform at inference, exactly as the diffusion model's
samples are (:class:`cmpipe.model.inference.RegressionSampler`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import ModelConfig

__all__ = ["RegressionModel", "UNet", "build_unet_model"]


def _groups(channels: int) -> int:
    """GroupNorm groups: the largest of 32, 16, ..., 1 dividing ``channels`` with >= 2 channels
    per group where possible."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class ConvBlock(nn.Module):
    """Residual block: (GroupNorm, SiLU, 3x3 conv) twice, plus a shortcut (1x1 conv if the width changes)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(_groups(c_out), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class UNet(nn.Module):
    """U-Net from ``in_channels`` maps to ``out_channels`` maps of the same size (see the module docstring).

    Parameters
    ----------
    nf : int
        Base width [channels].
    ch_mult : sequence of int
        Width multiplier per level; ``len(ch_mult) - 1`` halvings, so the map side must be a
        multiple of ``2**(len(ch_mult) - 1)``.
    num_res_blocks : int
        Conv blocks per level, in the encoder and in the decoder.
    in_channels, out_channels : int
    """

    def __init__(self, nf: int, ch_mult: tuple[int, ...], num_res_blocks: int,
                 in_channels: int = 2, out_channels: int = 2) -> None:
        super().__init__()
        widths = [nf * m for m in ch_mult]
        self.conv_in = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.down_blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        c = nf
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ConvBlock(c, w))
                c = w
            self.down_blocks.append(nn.Sequential(*blocks))
            if i < len(widths) - 1:
                self.downs.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = ConvBlock(c, c)
        self.ups, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            if i < len(widths) - 1:
                self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
            blocks = []
            c_in = c + w  # the encoder's skip at this level has w channels
            for _ in range(num_res_blocks):
                blocks.append(ConvBlock(c_in, w))
                c_in = w
            self.up_blocks.append(nn.Sequential(*blocks))
            c = w
        self.conv_out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, out_channels, 1))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(cond)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        h = self.middle(h)
        for j, block in enumerate(self.up_blocks):
            if j > 0:
                h = self.ups[j - 1](h)
            h = block(torch.cat([h, skips.pop()], dim=1))
        return self.conv_out(h)


class RegressionModel(nn.Module):
    """The U-Net with the interface :mod:`cmpipe.model.training` uses of a score_models ``ScoreModel``.

    Attributes
    ----------
    model : torch.nn.Module
        The network (:class:`UNet`, or its DDP wrapper: wrap ``model``, not this object).
    device : torch.device
    hyperparameters : dict
        ``{"model": "unet", "nf", "ch_mult", "num_res_blocks"}``; :func:`cmpipe.model.training.load_for_inference`
        adds ``"cmpipe"`` and ``"cmpipe_checkpoint"`` as for the score model.
    """

    def __init__(self, model: nn.Module, device: str | torch.device, hyperparameters: dict[str, Any]) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.hyperparameters = dict(hyperparameters)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """The prediction of the normalised targets ``(B, 2, R, R)`` (unbounded, see the module docstring)."""
        return self.model(cond)

    def loss_fn(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Squared error summed over channels and pixels, mean over the batch (the score model's
        loss reduction, so ``loss / (C H W)`` is the per-pixel MSE)."""
        err = self.model(cond) - x
        return err.square().flatten(1).sum(dim=1).mean()


def build_unet_model(model_cfg: ModelConfig, device: str | torch.device) -> RegressionModel:
    """A fresh (randomly initialised, from torch's global RNG) :class:`RegressionModel` on ``device``."""
    n_cond = len(model_cfg.conditions)
    net = UNet(model_cfg.nf, tuple(model_cfg.ch_mult), model_cfg.num_res_blocks, in_channels=n_cond)
    hp = {"model": "unet", "nf": model_cfg.nf, "ch_mult": list(model_cfg.ch_mult),
          "num_res_blocks": model_cfg.num_res_blocks, "in_channels": n_cond}
    return RegressionModel(net, device, hp)
