"""Per-view appearance codes on patch rays (issue 21, item 3): only the observed pixels train them."""

from __future__ import annotations

import pytest
import torch

from mald_nerfstudio.model.appearance import PatchAwareAppearanceEmbedding
from tests.training_harness import setup_trainer, tiny_config


def test_patch_rays_get_their_views_code_detached_or_the_mean_code():
    embedding = PatchAwareAppearanceEmbedding(3, 2)
    with torch.no_grad():
        embedding.embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
    indices = torch.tensor([[0, 0], [1, 1], [2, 2]])  # three rays, two samples each
    patch = torch.tensor([False, True, True])
    for mode, expected_patch_code in (("detached", [0.0, 1.0]), ("mean", [1.0, 1.0])):
        with embedding.for_rays(patch, mode):
            codes = embedding(indices)
        assert torch.allclose(codes[1], torch.tensor([expected_patch_code] * 2))
        assert torch.allclose(codes[0], torch.tensor([[1.0, 0.0]] * 2))  # observed ray: its own view's code
        codes.sum().backward()
        grad = embedding.embedding.weight.grad
        assert grad[0].abs().sum() > 0 and not grad[1:].any(), mode  # only the observed ray's view is trained
        embedding.embedding.weight.grad = None
    codes = embedding(indices)  # outside the block: nerfacto's behaviour
    codes.sum().backward()
    assert embedding.embedding.weight.grad.abs().sum(dim=1).gt(0).all()


@pytest.mark.parametrize("mode", ["detached", "mean", "trained"])
def test_the_inpainting_losses_reach_the_appearance_codes_only_when_trained(demo_scene, tmp_path, mode):
    def edit(config):
        config.pipeline.model.patch_appearance = mode
        config.pipeline.separate_inpainting_step = False  # one pass over observed and patch rays together

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=2, edit=edit))
    trainer.pipeline.prepare_training(trainer)
    pipeline = trainer.pipeline
    codes = pipeline.model.field.embedding_appearance.embedding.weight

    def code_grad(loss_name):
        codes.grad = None
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=0)
        loss_dict[loss_name].backward()
        return codes.grad

    inpainting = code_grad("adversarial_loss")  # adversarial + feature matching
    if mode == "trained":
        assert inpainting is not None and inpainting.abs().sum() > 0
    else:
        assert inpainting is None or not inpainting.any(), "the inpainting losses reached the per-view codes"
    reconstruction = code_grad("rgb_loss")
    assert reconstruction is not None and reconstruction.abs().sum() > 0  # observed pixels still train them
