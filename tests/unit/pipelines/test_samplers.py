"""pipelines/samplers.py: a sampler by name, built from the pipeline's own config, and put back after the block."""

import pytest
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.pipelines.samplers import SCHEDULERS, set_scheduler, using_sampler


def tiny_pipeline():
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=1,
                                attention_head_dim=4)
    return AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2"))


@pytest.mark.parametrize("name, cls", [("ddim", DDIMScheduler), ("dpmsolver", DPMSolverMultistepScheduler),
                                       ("ddpm", DDPMScheduler), ("default", AnnotatedDDPMScheduler)])
def test_using_sampler_swaps_for_the_block_and_puts_the_own_one_back(name, cls):
    pipe = tiny_pipeline()
    own = pipe.scheduler
    with using_sampler(pipe, name) as inside:
        assert inside is pipe and type(pipe.scheduler) is cls
        assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"  # the same betas
        if name == "dpmsolver":
            assert pipe.scheduler.config.use_lu_lambdas  # steps uniform in log-SNR unless the config says otherwise
    assert pipe.scheduler is own


def test_the_own_sampler_comes_back_when_the_block_raises():
    pipe = tiny_pipeline()
    own = pipe.scheduler
    with pytest.raises(RuntimeError, match="inside"):
        with using_sampler(pipe, "ddim"):
            raise RuntimeError("inside")
    assert pipe.scheduler is own


def test_an_unknown_name_is_refused_and_nothing_changes():
    pipe = tiny_pipeline()
    own = pipe.scheduler
    assert "euler" not in SCHEDULERS
    with pytest.raises(ValueError, match=r"unknown scheduler 'euler'; choose one of \('default', 'ddim', 'dpmsolver', 'ddpm'\)"):
        with using_sampler(pipe, "euler"):
            pass
    assert pipe.scheduler is own
    with pytest.raises(ValueError, match="unknown scheduler"):
        set_scheduler(pipe, "euler")
