"""Large counts are drawn in chunks (pipeline.py, `max_batch_size`): the seeding contract, and refusals before work."""

import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from annotated_pipeline import AnnotatedDDPMInterpolationPipeline
from annotated_pipeline.pipelines.pipeline_inputs import DEFAULT_MAX_BATCH_SIZE
from annotated_pipeline.utils.memory import device_memory_bytes, sampling_memory_bytes
from test_pipeline import tiny_pipeline


def draw(pipe, max_batch_size=None, batch_size=5, generator=None, **kwargs):
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return pipe(batch_size=batch_size, generator=generator, num_inference_steps=4, output_type="np",
                max_batch_size=max_batch_size, **kwargs).images


def test_a_deterministic_sampler_in_chunks_gives_the_images_of_one_batch():
    pipe = tiny_pipeline(num_class_embeds=3, null_class_embed=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    one_batch = draw(pipe, guidance_scale=2.0)
    for chunk in (1, 2, 3):  # chunks of 1, uneven chunks; the classes in turn continue across chunks
        np.testing.assert_allclose(draw(pipe, chunk, guidance_scale=2.0), one_batch, atol=1e-5)


def test_one_generator_per_image_makes_a_stochastic_sampler_chunk_independent_too():
    pipe = tiny_pipeline()
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    def generators():
        return [torch.Generator().manual_seed(i) for i in range(5)]

    np.testing.assert_allclose(draw(pipe, 2, generator=generators()), draw(pipe, generator=generators()), atol=1e-5)
    # With one generator the step noise z is drawn chunk after chunk (the documented contract): x_T is the same,
    # the images are not.
    assert not np.allclose(draw(pipe, 2), draw(pipe))


def test_the_u_net_never_sees_more_than_max_batch_size_images():
    pipe = tiny_pipeline()
    sizes = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        draw(pipe, 2)
    finally:
        handle.remove()
    assert set(sizes) == {2, 1}  # 5 images: chunks of 2, 2, 1


def test_interpolation_in_chunks_gives_the_row_of_one_batch():
    pipe = AnnotatedDDPMInterpolationPipeline.from_pipe(tiny_pipeline(num_class_embeds=3, null_class_embed=True))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    kwargs = dict(seeds=(0, 1), class_labels=(0, 2), guidance_scale=2.0, num_images=5, num_inference_steps=4,
                  output_type="np")  # the class embedding mixed by w, per chunk
    row = pipe(**kwargs).images
    chunked = pipe(**kwargs, max_batch_size=2).images
    np.testing.assert_allclose(chunked, row, atol=1e-5)


def test_a_count_whose_images_cannot_fit_is_refused_before_any_step():
    pipe = tiny_pipeline()
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    too_many = device_memory_bytes("cpu") // (3 * 4 * 8 * 8) + 1  # x_T, outputs, their copy: 12 bytes a value
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=rf"^{too_many} images in chunks of {DEFAULT_MAX_BATCH_SIZE} need about .* "
                                             r"GiB of RAM: lower the number of images \(batch_size\) or max_batch_size$"):
            draw(pipe, batch_size=too_many)
        with pytest.raises(ValueError, match="max_batch_size must be a positive integer"):
            draw(pipe, 0)
    finally:
        handle.remove()
    assert not calls and time.perf_counter() - start < 5


def test_the_estimate_counts_the_images_and_one_chunk():
    # 10 images of 1 x 4 x 4 values in chunks of 3; one level of 2 x 4 x 4 feature values per image.
    assert sampling_memory_bytes(10, 3, 16, 4, 2, (1,)) == 12 * 10 * 16 + 40 * 3 * 32
    assert sampling_memory_bytes(10, 3, 16, 4, 2, (1,), guided=True) == 12 * 10 * 16 + 40 * 6 * 32


def test_a_count_that_fits_the_machine_but_not_the_free_memory_warns_once_and_draws(monkeypatch):
    from annotated_pipeline.utils import memory

    pipe = tiny_pipeline()
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device: 1024)
    with pytest.warns(RuntimeWarning, match=r"^drawing 5 images in chunks of 5 needs about 0\.0 GiB and only 0\.0 GiB "
                                            r"is free now \(of this machine's .* GiB of RAM\)"):
        assert draw(pipe).shape[0] == 5
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device: None)  # the system does not say: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw(pipe)


def test_the_free_memory_is_what_proc_meminfo_says():
    from annotated_pipeline.utils.memory import available_memory_bytes

    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    assert abs(available_memory_bytes("cpu") - kib * 1024) < 2**30 and available_memory_bytes("cpu") <= device_memory_bytes("cpu")
