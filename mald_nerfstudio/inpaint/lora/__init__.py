"""Per-scene LoRA customisation of the inpainting latent diffusion model (MALD-NeRF, Sec. 3.2).

LoRA adapters (peft) are added to the U-Net's attention projections and to the CLIP text encoder, and trained
on the scene's own training images with a self-supervised inpainting task: random rectangles are masked and the
model learns to fill them, prompted with a scene-specific token ("a photo of sks scene"). The real object's
content is unknown (it must be removed), so

* the object region is always part of the inpainting mask and hidden in the masked-image conditioning, exactly
  as at inference time, and
* the diffusion loss (noise-prediction MSE per latent pixel) is zero on latent pixels that touch the object.

The adapter is saved in diffusers' LoRA format (``pytorch_lora_weights.safetensors`` written by
``save_lora_weights``) under a cache folder whose name is a hash of the images, the object masks, the base model
and the customisation settings, so a second run on the same scene reuses it.
:meth:`~mald_nerfstudio.inpaint.ldm.LDMInpainter.load_adapter` puts it into the inpainter (which then prompts
with the adapter's scene token).

Modules (import them directly; this file imports nothing, so :mod:`~mald_nerfstudio.inpaint.ldm` can use
:mod:`.adapter` without an import circle):

* :mod:`.data`: the self-supervised task -- scene preparation, random rectangles, training batches, object latent
  mask and the masked diffusion loss.
* :mod:`.cache`: where adapters are cached -- cache folder, recipe version, base-model name, scene cache key.
* :mod:`.adapter`: adapter folders on disk -- file names, atomic save, ``customization.json`` as
  :class:`~.adapter.AdapterInfo`, the adapter check, adapter files as tensors (for checkpoints).
* :mod:`.training`: :class:`~.training.LoRACustomizationConfig`, the customizer and its training loop, and
  :func:`~.training.customize`.
* :mod:`.cli`: the ``mald-nerf-customize --images DIR --masks DIR`` command.
"""
