"""The patch discriminator of masked adversarial training (MALD-NeRF component 1).

A StyleGAN2-style residual discriminator, sized for small square patches. It tells patches cut from the
current inpainted training images ("real") from patches the NeRF renders at the same pixels ("fake"); the
caller zeroes pixels outside the inpainting mask in both before calling it (see
:func:`mald_nerfstudio.model.adversarial_loss.mask_patches`).

Layout for a ``P x P`` patch (``P`` a power of two, at least 8)::

    x in [0, 1] -> 2x - 1 -> 1x1 conv (from RGB)
    -> log2(P) - 2 residual blocks, each halving the resolution, P -> P/2 -> ... -> 4
    -> 3x3 conv at 4x4 -> fully connected -> one logit per patch

Each residual block is ``conv3x3 -> avg-pool -> conv3x3`` on the main path and ``avg-pool -> conv1x1`` on
the skip path, summed and scaled by ``1/sqrt(2)`` (StyleGAN2's residual discriminator, with average pooling
in place of its blur-and-stride downsampling). There is no normalisation layer and no minibatch-stddev
layer, so every patch's logit depends on that patch alone: the R1 penalty can take the gradient of the
summed logits, and results do not change with batch composition.

The network keeps fp32 parameters and runs under ``torch.autocast`` (fp16 on CUDA, bf16 on CPU); its
logits and features then come out in the autocast dtype, and the loss functions cast them to fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, List, Literal, Tuple, Type, Union, overload

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.configs.base_config import InstantiateConfig

from mald_nerfstudio.errors import MaldInputError

_LEAK = 0.2


@dataclass
class DiscriminatorConfig(InstantiateConfig):
    """Size of the patch discriminator.

    The defaults suit a GPU (64 px patches, about 3.5 M parameters). A CPU smoke-test variant:
    ``DiscriminatorConfig(patch_size=16, base_channels=16, max_channels=64)`` (about 0.14 M parameters).
    """

    _target: Type = field(default_factory=lambda: PatchDiscriminator)
    """Target class to instantiate."""
    patch_size: Optional[int] = None
    """Side of the square patches judged (power of two >= 8); None: the datamanager's inpaint patch size."""
    base_channels: int = 32
    """Feature channels at full patch resolution; each residual block doubles them, up to max_channels."""
    max_channels: int = 256
    """Upper bound on the feature channels of any layer (the 4x4 epilogue included)."""


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """A same-padding convolution initialised for a leaky-ReLU network (He init, zero bias)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, a=_LEAK, nonlinearity="leaky_relu")
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


class _ResidualDownBlock(nn.Module):
    """StyleGAN2 residual discriminator block: two 3x3 convolutions, resolution halved, 1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = _conv(in_channels, in_channels, 3)
        self.conv1 = _conv(in_channels, out_channels, 3)
        self.skip = _conv(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the block output at half the input resolution."""
        skip = self.skip(F.avg_pool2d(x, 2))
        h = F.leaky_relu(self.conv0(x), _LEAK)
        h = F.leaky_relu(self.conv1(F.avg_pool2d(h, 2)), _LEAK)
        return (h + skip) * (1.0 / math.sqrt(2.0))


class PatchDiscriminator(nn.Module):
    """Residual patch discriminator: ``[B, 3, P, P]`` patches in ``[0, 1]`` -> ``[B, 1]`` logits.

    Inputs are mapped to ``[-1, 1]`` internally (``2x - 1``), so a zeroed (masked-out) pixel is seen as -1
    in both real and fake patches. Positive logits mean "real".
    """

    config: DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig, patch_size: Optional[int] = None, **kwargs) -> None:
        super().__init__()
        self.config = config
        if config.patch_size is not None and patch_size is not None and config.patch_size != patch_size:
            raise MaldInputError(
                f"The discriminator's patch_size {config.patch_size} differs from the {patch_size} px patches the "
                "datamanager cuts",
                fix="leave --pipeline.model.discriminator.patch-size unset (it follows "
                "--pipeline.datamanager.inpaint-patch-size)",
            )
        p = patch_size or config.patch_size
        if p is None:
            raise MaldInputError("The discriminator needs a patch size", fix="pass patch_size or set it in the config")
        self.patch_size = p
        """Side of the square patches this discriminator judges."""
        if p < 8 or p & (p - 1):
            raise MaldInputError(
                f"The discriminator's patch_size must be a power of two of at least 8 (8, 16, 32, 64, 128, ...), "
                f"got {p}",
                fix="Set the same power-of-two patch size for the discriminator and the patch pixel sampler",
            )
        if config.base_channels < 1 or config.max_channels < config.base_channels:
            raise MaldInputError(
                f"The discriminator needs 1 <= base_channels <= max_channels, got base_channels="
                f"{config.base_channels} and max_channels={config.max_channels}",
                fix="Raise max_channels or lower base_channels",
            )
        num_blocks = int(math.log2(p)) - 2
        channels = [min(config.base_channels * 2**i, config.max_channels) for i in range(num_blocks + 1)]
        self.from_rgb = _conv(3, channels[0], 1)
        self.blocks = nn.ModuleList(_ResidualDownBlock(channels[i], channels[i + 1]) for i in range(num_blocks))
        c = channels[-1]
        self.final_conv = _conv(c, c, 3)
        self.fc = nn.Linear(c * 4 * 4, c)
        nn.init.kaiming_normal_(self.fc.weight, a=_LEAK, nonlinearity="leaky_relu")
        nn.init.zeros_(self.fc.bias)
        self.out = nn.Linear(c, 1)
        nn.init.normal_(self.out.weight, std=1.0 / math.sqrt(c))
        nn.init.zeros_(self.out.bias)

    @property
    def num_blocks(self) -> int:
        """Number of resolution-halving residual blocks (log2(patch_size) - 2: 4 for 64 px, down to 4x4)."""
        return len(self.blocks)

    @overload
    def forward(self, x: Tensor, return_features: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, return_features: Literal[True]) -> Tuple[Tensor, List[Tensor]]: ...

    def forward(
        self, x: Float[Tensor, "B 3 P P"], return_features: bool = False
    ) -> Union[Float[Tensor, "B 1"], Tuple[Float[Tensor, "B 1"], List[Tensor]]]:
        """Judge a batch of patches.

        Args:
            x: patches, channels first, values in ``[0, 1]``, already masked by the caller.
            return_features: also return the intermediate features used by the feature-matching loss.

        Returns:
            ``[B, 1]`` logits, or ``(logits, features)`` where ``features`` holds the output of every residual
            block (resolutions P/2, ..., 4) followed by the 4x4 epilogue convolution: ``num_blocks + 1``
            tensors of shape ``[B, C_i, H_i, W_i]``.
        """
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != p or x.shape[3] != p:
            raise ValueError(f"the discriminator expects patches of shape [B, 3, {p}, {p}], got {tuple(x.shape)}")
        features: List[Tensor] = []
        h = F.leaky_relu(self.from_rgb(x * 2.0 - 1.0), _LEAK)
        for block in self.blocks:
            h = block(h)
            features.append(h)
        h = F.leaky_relu(self.final_conv(h), _LEAK)
        features.append(h)
        h = F.leaky_relu(self.fc(h.flatten(1)), _LEAK)
        logits = self.out(h)
        if return_features:
            return logits, features
        return logits
