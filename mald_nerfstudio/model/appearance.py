"""Per-view appearance codes that only the observed pixels train.

nerfacto gives every training view an appearance code (``NerfactoField.embedding_appearance``) and renders
evaluation views with the codes' mean. Inside the masks MALD-NeRF trains on inpainted images whose colours differ
from view to view; if the adversarial and feature-matching gradients reached the codes, each view's code would
soak up its own fill's colour, and the mean code used for evaluation would render none of them. The embedding here
is nerfacto's, but the rays the datamanager marks as inpainting-patch rays (read with
:func:`~mald_nerfstudio.data.training_batch.patch_rays`) get their code detached, or the mean code (see
:data:`PatchAppearance`), so the fill is learnt by the shared field.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal, Optional

import torch
from torch import Tensor

from nerfstudio.field_components.embedding import Embedding

PatchAppearance = Literal["detached", "mean", "trained"]
"""How patch rays use the per-view appearance codes: their view's code without gradient (``detached``), the codes'
mean without gradient, as evaluation renders (``mean``), or their view's code with gradient (``trained``, nerfacto's
behaviour and this project's before the choice was measured)."""


class PatchAwareAppearanceEmbedding(Embedding):
    """nerfacto's per-view appearance embedding; inside :meth:`for_rays`, patch rays get a code without gradient."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        self._patch_rays: Optional[Tensor] = None
        self._mode: PatchAppearance = "trained"

    @contextmanager
    def for_rays(self, patch_rays: Optional[Tensor], mode: PatchAppearance) -> Iterator[None]:
        """Within the block, the rays flagged in ``patch_rays`` (bool, one per ray) use ``mode``'s code."""
        self._patch_rays, self._mode = patch_rays, mode
        try:
            yield
        finally:
            self._patch_rays, self._mode = None, "trained"

    def forward(self, in_tensor: Tensor) -> Tensor:
        codes = super().forward(in_tensor)
        flags = self._patch_rays
        if flags is None or self._mode == "trained" or not bool(flags.any()) or codes.shape[0] != flags.shape[0]:
            return codes
        if self._mode == "mean":
            patch_codes = self.mean(dim=0).detach().expand_as(codes)
        else:
            patch_codes = codes.detach()
        return torch.where(flags.reshape(-1, *([1] * (codes.dim() - 1))), patch_codes, codes)
