"""Every use of a private attribute of nerfstudio or viser, in one place.

Public APIs do not offer these, so they can change in any release: ``tests/test_upstream_internals.py`` checks
each one against the installed versions and fails, naming this module, when nerfstudio or viser differ from the
versions below (those of constraints.txt, which the tests passed with). Check the attributes again there and
update the versions.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

CHECKED_VERSIONS: Dict[str, str] = {"nerfstudio": "1.1.5", "viser": "0.2.7"}
"""The package versions the attributes below were checked against."""


def proposal_sampler_counters(sampler: Any) -> Dict[str, int]:
    """nerfstudio's ``ProposalNetworkSampler`` schedule counters (``_step``, ``_steps_since_update``), which nerfacto
    leaves out of checkpoints."""
    return {"proposal_step": int(sampler._step), "proposal_steps_since_update": int(sampler._steps_since_update)}


def restore_proposal_sampler_counters(sampler: Any, counters: Dict[str, int]) -> None:
    """Set the counters :func:`proposal_sampler_counters` read."""
    sampler._step = int(counters["proposal_step"])
    sampler._steps_since_update = int(counters["proposal_steps_since_update"])


def camera_click_callbacks(handle: Any) -> List[Callable]:
    """The click callbacks nerfstudio's viewer registered on a viser camera frustum (``handle._impl.click_cb``), so a
    frustum redrawn with a new thumbnail keeps them; none when viser keeps them elsewhere."""
    return list(getattr(getattr(handle, "_impl", None), "click_cb", None) or [])
