"""The pretrained networks behind LPIPS, FID and KID, loaded from local files only.

LPIPS (torchmetrics' implementation) needs an ImageNet backbone from torchvision (AlexNet or VGG16) plus the
small LPIPS linear heads, which torchmetrics ships inside its package. FID and KID need the Inception-v3 FID
network of torch-fidelity. Both libraries would download the backbone on first use; this module never lets
them: the backbone is built without weights (``weights=None``) and then filled from a local file, either
the one the user names in the config or the file in the torch hub cache where the libraries' own download
would have put it (``torch.hub.get_dir()/checkpoints/<file name>``; set ``TORCH_HOME`` to move it). The file is
found (or its absence reported) before anything is built, and the libraries are asked for no pretrained backbone,
so they have nothing to download; torch itself is left as it is.

When a file is missing or is not the expected checkpoint, :class:`~mald_nerfstudio.errors.MaldSetupError` is
raised with one paragraph naming the file, where to put it and the URL to fetch it from. Nothing here ever
computes LPIPS/FID/KID with a randomly initialised network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from mald_nerfstudio.errors import MaldSetupError

LpipsNet = Literal["alex", "vgg"]


@dataclass(frozen=True)
class WeightsFile:
    """A checkpoint a metric needs: its file names in the torch hub cache and where to download it."""

    what: str
    """Human-readable name of the network, for messages."""
    file_names: tuple
    """Accepted file names in ``torch.hub.get_dir()/checkpoints`` (the first is the canonical one)."""
    url: str
    """Download URL of the canonical file (for the user's instructions; never fetched here)."""
    config_field: str
    """The config field that can point at the file instead."""


LPIPS_BACKBONES: Dict[str, WeightsFile] = {
    "alex": WeightsFile(
        what="torchvision AlexNet (ImageNet) backbone of LPIPS",
        file_names=("alexnet-owt-7be5be79.pth",),
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        config_field="lpips_weights_path",
    ),
    "vgg": WeightsFile(
        what="torchvision VGG16 (ImageNet) backbone of LPIPS",
        file_names=("vgg16-397923af.pth",),
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        config_field="lpips_weights_path",
    ),
}
"""Backbone checkpoints of torchmetrics' LPIPS (the files torchvision's ``weights=...DEFAULT`` downloads)."""

INCEPTION_FID = WeightsFile(
    what="torch-fidelity Inception-v3 FID network",
    file_names=("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth"),
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    config_field="inception_weights_path",
)
"""The FID Inception checkpoint (torch-fidelity's file; pytorch-fid's ``pt_inception`` file holds the same
weights under the same parameter names and is accepted too)."""

INCEPTION_FEATURE_DIMS = (64, 192, 768, 2048)
"""Feature layers of the FID Inception network that FID/KID can use."""


def hub_checkpoint_dir() -> Path:
    """The folder where torch hub (and therefore torchvision / torch-fidelity) caches downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(spec: WeightsFile, explicit_path: Optional[Union[str, Path]] = None) -> Path:
    """Find a checkpoint on disk, or raise :class:`MaldSetupError` saying where it must go.

    Args:
        spec: which checkpoint.
        explicit_path: a file the user configured; when given, it is the only place looked at.

    Returns:
        The path of an existing file.
    """
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if path.is_file():
            return path
        raise MaldSetupError(
            f"The {spec.what} was not found at {path}, the file given in the config field "
            f"`{spec.config_field}`. Weights are never downloaded by this project; download {spec.url} on a "
            f"machine with internet access and put it at that path (or point `{spec.config_field}` at it)."
        )
    tried: List[Path] = [hub_checkpoint_dir() / name for name in spec.file_names]
    for path in tried:
        if path.is_file():
            return path
    raise MaldSetupError(
        f"The {spec.what} was not found; looked for {', '.join(str(p) for p in tried)} (the torch hub cache, "
        f"torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it). Weights are never downloaded by this "
        f"project; download {spec.url} on a machine with internet access and put it at {tried[0]}, or set the "
        f"config field `{spec.config_field}` to the file."
    )


def _load_state_dict_file(path: Path, spec: WeightsFile) -> Dict[str, Tensor]:
    """Load a plain tensor state dict safely (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means the file is unusable; report it as setup error
        raise MaldSetupError(
            f"{path} could not be read as the {spec.what} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Replace it with the file from {spec.url}."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MaldSetupError(
            f"{path} is not a state dict of tensors, so it is not the {spec.what}. "
            f"Replace it with the file from {spec.url}."
        )
    return state


# ---------------------------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------------------------


class PerceptualDistance(nn.Module):
    """LPIPS distance (optionally masked) between images in [0, 1]; differentiable w.r.t. the images.

    Wraps an LPIPS network with torchmetrics' calling convention ``net(in0, in1, normalize=True)`` returning
    ``[B, 1, 1, 1]``. In production the network comes from :func:`build_lpips`, i.e. with pretrained weights;
    any other network must only be injected by tests.
    """

    def __init__(self, net: nn.Module, name: str = "lpips") -> None:
        super().__init__()
        self.net = net
        self.name = name

    def forward(
        self,
        pred: Float[Tensor, "B 3 H W"],
        target: Float[Tensor, "B 3 H W"],
        mask: Optional[Union[Bool[Tensor, "B 1 H W"], Float[Tensor, "B 1 H W"]]] = None,
    ) -> Float[Tensor, "B"]:
        """Per-image LPIPS. With ``mask`` (1/True = inpainting region), pixels outside it are set to black
        (0) in both images first: that is M-LPIPS."""
        pred = pred.clamp(0.0, 1.0)
        target = target.clamp(0.0, 1.0)
        if mask is not None:
            keep = mask.to(pred.dtype)
            pred = pred * keep
            target = target * keep
        return self.net(pred, target, normalize=True).reshape(pred.shape[0])


def _load_backbone_into_lpips(lpips_net: nn.Module, features_state: Dict[str, Tensor], net: LpipsNet) -> None:
    """Copy torchvision ``features.*`` weights into torchmetrics' sliced backbone (slices keep the indices)."""
    import torchvision

    tv_features = (torchvision.models.alexnet if net == "alex" else torchvision.models.vgg16)(weights=None).features
    tv_features.load_state_dict(features_state, strict=True)
    by_index: Dict[int, nn.Module] = {}
    for slice_ in lpips_net.net.children():
        for name, layer in slice_.named_children():
            by_index[int(name)] = layer
    for index, layer in enumerate(tv_features):
        if any(True for _ in layer.parameters()):
            by_index[index].load_state_dict(layer.state_dict(), strict=True)


def build_lpips(net: LpipsNet = "alex", weights_path: Optional[Union[str, Path]] = None) -> PerceptualDistance:
    """Build the differentiable LPIPS distance with pretrained weights, from local files only.

    The linear LPIPS heads come from the torchmetrics package; the backbone from ``weights_path`` or the torch
    hub cache (see :data:`LPIPS_BACKBONES` for the file names and URLs). The returned module is in eval mode,
    its parameters are frozen, and gradients flow to the input images (for an LPIPS training loss).

    Raises:
        MaldSetupError: the backbone checkpoint is missing or is not the expected file.
    """
    if net not in LPIPS_BACKBONES:
        raise MaldSetupError(f"Unknown LPIPS backbone {net!r}; choose one of {sorted(LPIPS_BACKBONES)}.")
    spec = LPIPS_BACKBONES[net]
    path = resolve_weights(spec, weights_path)
    state = _load_state_dict_file(path, spec)
    features_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    # pretrained=True: the linear heads shipped with torchmetrics; pnet_rand=True: the backbone is built without
    # torchvision's download, and is filled from the local checkpoint right below.
    lpips_net = _NoTrainLpips(pretrained=True, net=net, pnet_rand=True)
    try:
        _load_backbone_into_lpips(lpips_net, features_state, net)
    except (RuntimeError, KeyError) as err:
        raise MaldSetupError(
            f"{path} does not match the {spec.what} ({str(err).splitlines()[0]}). "
            f"Replace it with the file from {spec.url}."
        ) from err
    lpips_net.eval().requires_grad_(False)
    return PerceptualDistance(lpips_net, name=f"lpips_{net}")


# ---------------------------------------------------------------------------------------------------------------
# Inception (FID / KID)
# ---------------------------------------------------------------------------------------------------------------


class InceptionFeatures(nn.Module):
    """FID Inception features of float images in [0, 1]: ``[B, 3, H, W] -> [B, num_features]``.

    Images are quantised to 8 bit exactly as torchmetrics' FID does with ``normalize=True`` (``(x * 255).byte()``)
    and resized to 299 x 299 inside the network.
    """

    def __init__(self, inception: nn.Module, num_features: int) -> None:
        super().__init__()
        self.inception = inception
        self.num_features = num_features

    @torch.no_grad()
    def forward(self, images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B D"]:
        """Extract features."""
        images_u8 = (images.clamp(0.0, 1.0) * 255).byte()
        return self.inception(images_u8).reshape(images.shape[0], -1)


def build_inception(
    weights_path: Optional[Union[str, Path]] = None, feature_dim: int = 2048
) -> InceptionFeatures:
    """Build torch-fidelity's FID Inception (via torchmetrics' ``NoTrainInceptionV3``) from a local file.

    Raises:
        MaldSetupError: the checkpoint is missing or is not the FID Inception network.
    """
    if feature_dim not in INCEPTION_FEATURE_DIMS:
        raise MaldSetupError(f"Inception feature dimension must be one of {INCEPTION_FEATURE_DIMS}, got {feature_dim}.")
    path = resolve_weights(INCEPTION_FID, weights_path)
    # Validate with the safe loader first: torch-fidelity itself loads with weights_only=False.
    _load_state_dict_file(path, INCEPTION_FID)
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        inception = NoTrainInceptionV3(  # from the local file: torch-fidelity downloads only without a path
            name="inception-v3-compat", features_list=[str(feature_dim)], feature_extractor_weights_path=str(path)
        )
    except (RuntimeError, KeyError) as err:
        raise MaldSetupError(
            f"{path} does not match the {INCEPTION_FID.what} ({str(err).splitlines()[0]}). "
            f"Replace it with the file from {INCEPTION_FID.url}."
        ) from err
    return InceptionFeatures(inception, feature_dim)


def required_weight_files() -> Sequence[WeightsFile]:
    """Every checkpoint the metrics can use (for docs and setup checks)."""
    return (*LPIPS_BACKBONES.values(), INCEPTION_FID)
