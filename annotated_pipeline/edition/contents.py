"""What the annotated edition is made of: which modules make which page, in the blog's reading order.

PAGES is the one table that names the library's modules: change it when a module moves. Each entry is
(page slug, title, sources); a source is a module's dotted name (the whole module) or
"module:Qualified.name" (one function, class or method of it). Modules are found by import, so the
edition reads whatever the installed package holds.
"""

PAGES = (
    ("schedules", "1. Beta schedules",
     ("annotated_pipeline.scheduler.schedules",)),
    ("forward", "2. The forward process q(x_t | x_0)",
     ("annotated_pipeline.losses:q_sample",
      "annotated_pipeline.scheduler.scheduling_annotated_ddpm:AnnotatedDDPMScheduler.add_noise")),
    ("unet", "3. The U-Net eps_theta(x_t, t)",
     ("annotated_pipeline.unet.embeddings", "annotated_pipeline.unet.blocks", "annotated_pipeline.unet.attention",
      "annotated_pipeline.unet.unet_2d")),
    ("loss", "4. The loss",
     ("annotated_pipeline.losses",)),
    ("training-step", "5. The training step (Algorithm 1)",
     ("annotated_pipeline.training.step",)),
    ("reverse-step", "6. The reverse step (eq. 6-7, Algorithm 2)",
     ("annotated_pipeline.scheduler.scheduling_annotated_ddpm",)),
    ("sampling", "7. The sampling pipeline",
     ("annotated_pipeline.pipelines.pipeline", "annotated_pipeline.pipelines.pipeline_predictions:predicted_original_sample")),
    ("guidance", "8. Classifier-free guidance",
     ("annotated_pipeline.pipelines.pipeline_predictions:classifier_free_guidance",
      "annotated_pipeline.pipelines.pipeline:AnnotatedDDPMPipeline._noise_prediction",
      "annotated_pipeline.pipelines.pipeline_inputs:check_guidance_interval")),
    ("editing", "9. Editing: RePaint, SDEdit, interpolation",
     ("annotated_pipeline.pipelines.pipeline_inpaint", "annotated_pipeline.pipelines.pipeline_img2img",
      "annotated_pipeline.pipelines.pipeline_interpolate")),
    # not the paper: the faster forms the U-Net runs, each with the test that proves it equal (SPEED_VARIANTS)
    ("speed", "10. Speed variants",
     ("annotated_pipeline.unet.fused",)),
    # beyond the blog: a later paper's answer to "which average of the weights to sample from"
    ("posthoc-ema", "11. Post-hoc EMA (Karras et al. 2024)",
     ("annotated_pipeline.training.posthoc_ema",)),
)

# Figures, each beside the code it illustrates: key -> (page slug, qualified name of the section, caption).
# The key names a drawing in figures.py.
FIGURE_PLACES = {
    "schedules": ("schedules", "cosine_betas",
                  r"$\bar\alpha_t$ (top) and $\log \mathrm{SNR}(t)$ (bottom) of each schedule, for $T = 1000$ and $T = 300$."),
    "forward": ("forward", "q_sample",
                r"One Fashion-MNIST image under $q(x_t \mid x_0)$, the same $\epsilon$ in every cell: a row per schedule."),
    "attention": ("unet", "Attention",
                  "Where the bottleneck's attention looks (one query pixel, marked), at four steps of the chain."),
    "denoising": ("sampling", "AnnotatedDDPMPipeline.__call__",
                  r"The shipped model sampling: $x_t$ (top) and its prediction $\hat x_0$ (bottom) at each step."),
}

# The speed variants: (what runs, the readable form it equals, the test that proves it). Names are qualified
# names in the modules of PAGES (found there, so that only PAGES names modules).
SPEED_VARIANTS = (
    ("FusedResnetBlock", r"`ResnetBlock`: GroupNorm, then $h\,(1 + \mathrm{scale}) + \mathrm{shift}$ (FiLM)",
     "test_resnet_block_matches_the_two_step_form_forward_and_backward"),
    ("scale_shift_group_norm", "a GroupNorm, then the scale-shift",
     "test_fused_scale_shift_group_norm_is_norm_then_film"),
    ("FusedUpsample", "`Upsample`: nearest-neighbour x2, then the 3x3 convolution",
     "test_upsample_is_nearest_neighbour_then_3x3_conv_in_value_and_gradient"),
    ("AnnotatedUNet2DModel", "the same U-Net built with the readable blocks of blocks.py",
     "test_the_unet_computes_the_same_with_the_readable_blocks_of_blocks_py"),
    ("Downsample", "pixel-unshuffle 2x2, then a 1x1 convolution",
     "test_downsample_is_pixel_unshuffle_then_1x1_conv"),
    ("Attention", r"$\mathrm{softmax}(Q K^\top / \sqrt{d})\, V$ written out (Vaswani et al. 2017, eq. 1)",
     "test_softmax_attention_is_vaswani_eq_1"),
    ("LinearAttention", "Shen et al. 2021, eq. 4 written out",
     "test_linear_attention_is_shen_et_al_eq_4"),
    ("AnnotatedUNet2DModel.forward", "bfloat16 autocast and channels_last against float32",
     "test_bf16_autocast_and_channels_last_match_fp32"),
)
