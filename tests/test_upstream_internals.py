"""The private nerfstudio / viser attributes of :mod:`mald_nerfstudio.upstream_internals`, checked against the
installed versions: a failure means nerfstudio or viser moved and the module must be checked again."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version

import pytest

from mald_nerfstudio import upstream_internals as ui


@pytest.mark.parametrize("package", sorted(ui.CHECKED_VERSIONS))
def test_installed_versions_are_the_checked_ones(package):
    installed = version(package)
    assert installed == ui.CHECKED_VERSIONS[package], (
        f"{package} {installed} is installed, but mald_nerfstudio/upstream_internals.py was checked against "
        f"{ui.CHECKED_VERSIONS[package]}: check its private attributes against {installed}, then update "
        "CHECKED_VERSIONS (and constraints.txt)"
    )


def test_proposal_sampler_counters_round_trip():
    from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler

    sampler = ProposalNetworkSampler(num_nerf_samples_per_ray=8, num_proposal_samples_per_ray=(8,),
                                     num_proposal_network_iterations=1, update_sched=lambda step: 5)
    sampler.step_cb(7)  # nerfstudio's own counter update
    assert ui.proposal_sampler_counters(sampler)["proposal_step"] == 7
    other = ProposalNetworkSampler(num_nerf_samples_per_ray=8, num_proposal_samples_per_ray=(8,),
                                   num_proposal_network_iterations=1, update_sched=lambda step: 5)
    ui.restore_proposal_sampler_counters(other, ui.proposal_sampler_counters(sampler))
    assert ui.proposal_sampler_counters(other) == ui.proposal_sampler_counters(sampler)
    assert other._step == 7  # the attribute nerfstudio itself reads


def test_viser_keeps_click_callbacks_where_we_read_them():
    from viser import _scene_handles as handles

    assert [f.name for f in dataclasses.fields(handles.SceneNodeHandle)] == ["_impl"]
    assert "click_cb" in {f.name for f in dataclasses.fields(handles._SceneNodeHandleState)}

    class Handle:
        _impl = type("State", (), {"click_cb": [print]})()

    assert ui.camera_click_callbacks(Handle()) == [print]
    assert ui.camera_click_callbacks(object()) == []
