"""Where this process stands among those `accelerate launch` / `torchrun` started: one state,
shared by the training loop and the pipeline, so they agree on the device and on who is main."""

from __future__ import annotations


def cpu_only() -> bool:
    """Train on the CPU: asked for (`ACCELERATE_USE_CPU`, as `accelerate launch --cpu` sets it), or
    no accelerator here. accelerate spreads CPU processes over gloo only when told `cpu=True`;
    without it, N processes launched on a machine without GPUs would each train alone."""
    import torch
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def process_state():
    """accelerate's `PartialState`: `is_main_process`, `wait_for_everyone()` (one process when run plainly).

    Created with the same `cpu` as the loop's `Accelerator`, whichever comes first, since the
    state is made once per process and a second, different request is refused.
    """
    from accelerate import PartialState

    return PartialState(cpu=cpu_only())
