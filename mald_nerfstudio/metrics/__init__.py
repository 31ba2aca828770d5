"""The measurements: in-mask and whole-image metrics (inpainting.py), the networks behind LPIPS and FID from local
weights only (networks.py), patch statistics (patch_swd.py) and crops for views without ground truth
(border_crops.py). Below the model, which reports them during training, and below eval/, which runs them."""
