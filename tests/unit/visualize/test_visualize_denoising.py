"""The denoising trajectory: pred_original_sample in the pipeline's callback, the collector, the GIF and strip."""

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler
from PIL import Image

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.pipelines.pipeline import predicted_original_sample
from annotated_pipeline.visualize.denoising import collect_trajectory, denoising_frames, denoising_strip, save_gif


def tiny_pipeline(**scheduler_kwargs):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=4)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine", **scheduler_kwargs)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("bound", [dict(clip_sample=True), dict(clip_sample=False), dict(thresholding=True, sample_max_value=1.5)])
def test_predicted_original_sample_is_our_schedulers_own(prediction_type, bound):
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine", prediction_type=prediction_type, **bound)
    scheduler.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps:
        x_t, output = torch.randn(3, 1, 4, 4, generator=g) * 2, torch.randn(3, 1, 4, 4, generator=g) * 2
        own = scheduler.step(output, t, x_t, generator=g).pred_original_sample
        torch.testing.assert_close(predicted_original_sample(scheduler, output, t, x_t), own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predicted_original_sample_is_dpm_solvers_data_prediction(prediction_type):
    """Independent truth: diffusers' DPM-Solver++ converts the model output to its x_0 prediction itself."""
    ours = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine", prediction_type=prediction_type,
                                  timestep_spacing="trailing", thresholding=True)
    dpm = DPMSolverMultistepScheduler.from_config(ours.config)
    dpm.set_timesteps(6)
    g = torch.Generator().manual_seed(1)
    for t in dpm.timesteps:
        x_t, output = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
        dpm._init_step_index(t)
        expected = dpm.convert_model_output(output, sample=x_t)
        torch.testing.assert_close(predicted_original_sample(dpm, output, t, x_t), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("swap", [None, DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler])
def test_callback_gets_pred_original_sample_with_every_scheduler(swap):
    pipe = tiny_pipeline()
    if swap is not None:
        pipe.scheduler = swap.from_config(pipe.scheduler.config)
    seen = []

    def callback(p, i, t, tensors):
        seen.append((int(t), tensors["pred_original_sample"].clone(), tensors["latents"].clone()))
        return tensors

    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4, output_type="pt",
                  callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"]).images
    assert len(seen) == len(pipe.scheduler.timesteps)
    assert all(x0.shape == (2, 1, 8, 8) for _, x0, _ in seen)
    if swap is None or swap is DDIMScheduler:  # at the last step (t = 0 chain end) x_0 is x_0_hat itself
        torch.testing.assert_close(seen[-1][1], seen[-1][2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(images, (seen[-1][2].clamp(-1, 1) + 1) / 2)
    with pytest.raises(ValueError, match="not in"):
        pipe(batch_size=1, num_inference_steps=2, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"])


@pytest.mark.parametrize("swap", [None, DPMSolverMultistepScheduler])
def test_trajectory_keeps_the_samples_and_pairs_x_t_with_its_x0_hat(swap, tmp_path):
    pipe = tiny_pipeline(timestep_spacing="trailing")
    if swap is not None:
        pipe.scheduler = swap.from_config(pipe.scheduler.config)
    plain = pipe(batch_size=3, generator=torch.Generator().manual_seed(5), num_inference_steps=7, output_type="pt").images
    progress = []
    trajectory = collect_trajectory(pipe, num_images=3, every=3, seed=5, num_inference_steps=7,
                                    on_step=lambda i, n: progress.append((i, n)))
    assert torch.equal((trajectory.samples + 1) / 2, plain)  # collecting changes no sample
    assert progress == [(i, 7) for i in range(1, 8)]  # after each step of the chain
    assert trajectory.steps == [0, 3, 6]
    chain = pipe.scheduler.timesteps.tolist()
    assert trajectory.timesteps == [chain[0], chain[3], chain[6]]
    # x_t of the first kept step is x_T, the generator's first draw
    x_T = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    assert torch.equal(trajectory.x_t[0], x_T)
    # each x_0_hat belongs to its x_t: eq. (15) from the U-Net's eps at that x_t
    i = 1
    eps = pipe.unet(trajectory.x_t[i], trajectory.timesteps[i]).sample
    torch.testing.assert_close(trajectory.x0_hat[i], predicted_original_sample(pipe.scheduler, eps, trajectory.timesteps[i],
                                                                               trajectory.x_t[i]), rtol=1e-4, atol=1e-5)

    frames = denoising_frames(pipe, trajectory=trajectory, scale=2)
    assert len(frames) == 4 and len({f.size for f in frames}) == 1
    save_gif(frames, tmp_path / "d.gif")
    with Image.open(tmp_path / "d.gif") as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0
    strip = denoising_strip(trajectory, num_columns=2)
    assert strip.height > 6 * 16 and strip.width > 3 * 16  # 2 rows per image, 2 steps + the final sample
    with pytest.raises(ValueError, match="every"):
        collect_trajectory(pipe, every=0)
