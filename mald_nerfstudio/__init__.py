"""mald-nerfstudio: MALD-NeRF (masked adversarial training with a latent diffusion model) for nerfstudio.

Importing this package must stay cheap and must never fail: nerfstudio imports every plugin's entry points
before any ``ns-*`` command runs, so a broken import here would break all of them. Heavy, optional pieces
(diffusers, transformers, peft, metric backbones) are imported lazily where they are used. Importing it changes
nothing global: the error hook and torch's allow-list are installed where our commands and methods start
(:func:`mald_nerfstudio.errors.install_run_hooks`).
"""

from mald_nerfstudio.errors import MaldInputError, MaldSetupError

__version__ = "0.1.0"
__all__ = ["MaldInputError", "MaldSetupError", "__version__"]
