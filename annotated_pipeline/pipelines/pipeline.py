r"""Sampling from a trained DDPM, as a diffusers pipeline.

Ho et al. 2020, Algorithm 2 (Sampling):

1. $x_T \sim \mathcal{N}(0, I)$
2. for $t = T, \dots, 1$:
3. $\quad z \sim \mathcal{N}(0, I)$ if $t > 1$, else $z = 0$
4. $\quad x_{t-1} = \frac{1}{\sqrt{\alpha_t}} \Big( x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\, \epsilon_\theta(x_t, t) \Big) + \sigma_t z$
5. return $x_0$

The pipeline owns the loop; the scheduler owns one step of it (`scheduler.step`), so any diffusers
scheduler can be swapped in (DDIM, DPM-Solver, Euler, PNDM) and walk a shorter chain of timesteps.

This file is also the code that a saved pipeline carries. `save_pretrained` copies it to the root
of the saved folder as `pipeline.py`, and the code files of the U-Net and the scheduler (each
component's module bundled with the modules it imports relatively) into their subfolders, and
names them in `model_index.json`. So the folder loads

1. with this package installed: `AnnotatedDDPMPipeline.from_pretrained(path)`, which builds the
   components from the installed package and never executes code from the folder;
2. without it: `DiffusionPipeline.from_pretrained(path, trust_remote_code=True)`, which runs the
   folder's own code files (diffusers' remote-code loader);

and a pipeline loaded by route 2 saves again into a folder that loads by both routes. Therefore
this module imports nothing from `annotated_pipeline` but its siblings pipeline_inputs.py (the checks
of a call), pipeline_loading.py (route 1) and pipeline_saving.py (the code files), which are bundled
into the saved `pipeline.py` with it;
otherwise only torch, diffusers, huggingface_hub.
"""

import inspect
import tempfile
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.modeling_utils import ModelMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .pipeline_inputs import (check_call_inputs, check_guidance_interval, check_guidance_scale, check_sigma_spacing,
                              chunk_size, class_labels_tensor, is_int)
from .pipeline_loading import installed_component_classes, installed_module, load_with_installed_classes
from .pipeline_predictions import NonFiniteSampleError, classifier_free_guidance, predicted_original_sample  # noqa: F401
from .pipeline_saving import write_code_files

# The pipeline config keys (model_index.json) that hold a folder's recommended sampling settings.
SAMPLING_DEFAULT_KEYS = ("default_num_inference_steps", "default_guidance_scale", "default_guidance_interval")


class AnnotatedDDPMPipeline(DiffusionPipeline):
    """Unconditional (or class-conditional) image generation with a DDPM.

    Components:
        unet: the noise-prediction network eps_theta(x_t, t) (`AnnotatedUNet2DModel`, or any
            diffusers model with the same call signature, such as `UNet2DModel`).
        scheduler: `AnnotatedDDPMScheduler`, or any diffusers scheduler built from its config,
            e.g. `DDIMScheduler.from_config(pipe.scheduler.config)`.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, unet: ModelMixin, scheduler: SchedulerMixin, default_num_inference_steps: int | None = None,
                 default_guidance_scale: float | None = None, default_guidance_interval: list[int] | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)
        self.set_sampling_defaults(default_num_inference_steps, default_guidance_scale, default_guidance_interval)

    def set_sampling_defaults(self, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                              guidance_interval: tuple[int, int] | None = None):
        """Record what `pipe()` samples with when a call leaves these out (None: every training timestep,
        unguided, every step); they are config, so `save_pretrained` writes them to model_index.json and
        `from_pretrained` reads them back. The sampler is the scheduler component itself."""
        T = self.scheduler.config.num_train_timesteps
        if num_inference_steps is not None and not (is_int(num_inference_steps) and 1 <= num_inference_steps <= T):
            raise ValueError(f"default num_inference_steps must be an integer in 1..{T}, got {num_inference_steps!r}.")
        if guidance_scale is not None:
            check_guidance_scale(guidance_scale, "default guidance_scale")
        if guidance_interval is not None:
            check_guidance_interval(guidance_interval, T, 1.0 if guidance_scale is None else guidance_scale)
            guidance_interval = [int(t) for t in guidance_interval]
        self.register_to_config(default_num_inference_steps=num_inference_steps,
                                default_guidance_scale=None if guidance_scale is None else float(guidance_scale),
                                default_guidance_interval=guidance_interval)
        return self

    @property
    def sampling_defaults(self) -> dict:
        """What `pipe()` samples with when a call leaves these arguments out: the folder's recommended
        settings (saved in model_index.json) where it has them, else every training timestep, unguided.
        The sampler itself is the folder's scheduler (`pipe.scheduler`)."""
        config = self.config
        steps = config.get("default_num_inference_steps")
        scale = config.get("default_guidance_scale")
        interval = config.get("default_guidance_interval")
        return {
            "num_inference_steps": steps if steps is not None else self.scheduler.config.num_train_timesteps,
            "guidance_scale": scale if scale is not None else 1.0,
            "guidance_interval": tuple(interval) if interval is not None else None,
        }

    def resolve_sampling(self, num_inference_steps=None, guidance_scale=None, guidance_interval=None):
        """(num_inference_steps, guidance_scale, guidance_interval) as a call samples with them: each one
        given, else the folder's (`sampling_defaults`); a guidance_scale left out brings the folder's
        interval with it (the two were chosen together), an explicit one guides every step unless an
        interval is given too."""
        defaults = self.sampling_defaults
        if guidance_scale is None:
            guidance_scale = defaults["guidance_scale"]
            guidance_interval = defaults["guidance_interval"] if guidance_interval is None else guidance_interval
        if num_inference_steps is None:
            num_inference_steps = defaults["num_inference_steps"]
        return num_inference_steps, guidance_scale, guidance_interval

    # ----------------------------------------------------------------------------------------
    # Sampling
    # ----------------------------------------------------------------------------------------

    def _check_sigma_spacing(self, num_inference_steps):
        check_sigma_spacing(self.scheduler, num_inference_steps)

    def _check_inputs(self, batch_size, num_inference_steps, output_type, class_labels, guidance_scale,
                      guidance_interval=None, generator=None, eta=0.0):
        """A ValueError for any argument a call cannot take (pipeline_inputs.check_call_inputs)."""
        check_call_inputs(self.unet, self.scheduler, batch_size, num_inference_steps, output_type, class_labels,
                          guidance_scale, guidance_interval, generator, eta)

    def _class_labels_tensor(self, class_labels, batch_size, device):
        """One label per image; None means the classes in turn, 0, 1, ..., K - 1, 0, 1, ..."""
        return class_labels_tensor(self.unet, class_labels, batch_size, device)

    def _step_kwargs(self, generator, eta, use_clipped_model_output):
        """Only some schedulers' `step` take `generator` (DDPM, DDIM, Euler), `eta` or
        `use_clipped_model_output` (DDIM); PNDM takes none of them.

        use_clipped_model_output=None means: True when the scheduler clips x_0_hat (`clip_sample` or
        `thresholding` in its config). DDIM (Song et al. 2021, eq. (12)) writes x_{t-1} from x_0_hat and
        eps_theta; once x_0_hat is clipped, the eps that goes with it is

            eps = (x_t - sqrt(alphas_cumprod_t) x_0_hat) / sqrt(1 - alphas_cumprod_t),

        and using the unclipped eps_theta instead mixes two different predictions: near t = T - 1 of the
        cosine schedule x_0_hat divides eps_theta's error by sqrt(alphas_cumprod_t) ~ 0.0016, so the mix is
        far off there (benchmarks/RESULTS.md measures what it costs).
        """
        accepted = inspect.signature(self.scheduler.step).parameters
        kwargs = {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "use_clipped_model_output" in accepted:
            if use_clipped_model_output is None:
                config = self.scheduler.config
                use_clipped_model_output = bool(config.get("clip_sample", False) or config.get("thresholding", False))
            kwargs["use_clipped_model_output"] = use_clipped_model_output
        return kwargs

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator=None,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels=None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[int, int] | None = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs=("latents",),
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        use_clipped_model_output: bool | None = None,
        timesteps: list[int] | None = None,
        max_batch_size: int | None = None,
    ):
        """Generate images: Ho et al. 2020, Algorithm 2, one `scheduler.step` per timestep.

        Args:
            batch_size: number of images.
            generator: a `torch.Generator`, or a list of one per image, for reproducible samples.
            num_inference_steps: length of the chain (T walks every training timestep with DDPM;
                20-100 are enough with DDIM or DPM-Solver). None: the folder's recommended number
                (`sampling_defaults`), else T. Likewise `guidance_scale` (else 1.0): left out, it
                comes with the folder's `guidance_interval`. Explicit arguments win over the folder's.
            output_type: "pil" (grayscale "L" images for one-channel models), "np" (B, H, W, C)
                floats in [0, 1], or "pt" (B, C, H, W) floats in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            class_labels: for class-conditional U-Nets: an int or one int per image in 0..K-1; None
                (default) asks for the classes in turn, 0, 1, ..., K - 1, 0, 1, ...
            guidance_scale: s of classifier-free guidance (Ho & Salimans 2022, eq. (6) with s = 1 + w):
                eps = eps_theta(x_t, t, empty) + s * (eps_theta(x_t, t, y) - eps_theta(x_t, t, empty)).
                1.0 is the conditional model alone (the default where the folder recommends no scale);
                s > 1 pushes the samples towards what the class adds, s = 0 is the unconditional model. Needs a U-Net with a "no class"
                embedding (`null_class_embed`); each guided step runs the U-Net on a doubled batch.
            guidance_interval: (t_low, t_high), training timesteps: guide only the steps with
                t_low <= t <= t_high and take the conditional model alone (s = 1, one U-Net call on the
                plain batch) elsewhere. Kynkäänniemi et al. 2024 find that guidance at high noise levels
                costs variety and at low noise levels does little. None: every step, or the folder's
                interval when `guidance_scale` is left out too.
            callback_on_step_end: `fn(pipe, step_index, timestep, callback_kwargs) -> dict`, called
                after every step with the tensors named in `callback_on_step_end_tensor_inputs`
                ("latents" is x_{t'} after the step; "pred_original_sample" is x_0_hat predicted from the
                step's x_t, see `predicted_original_sample`); a returned "latents" replaces x_{t'}.
            eta: DDIM's eta (only passed to schedulers whose `step` takes it).
            latents: start from this x_T instead of a fresh N(0, I) draw.
            use_clipped_model_output: for schedulers whose `step` takes it (DDIM): recompute eps from
                the clipped x_0_hat. None (default): True when the scheduler clips x_0_hat, which
                diffusers' `DDIMPipeline` leaves off unless asked; see `_step_kwargs`.
            timesteps: an explicit descending chain (e.g. [999, 800, 500, 200, 0]) instead of
                `num_inference_steps` spaced by the scheduler, for schedulers whose `set_timesteps`
                takes one (ours, DDPM, DPM-Solver++, Euler; not DDIM).
            max_batch_size: images per U-Net call (None: DEFAULT_MAX_BATCH_SIZE); more are drawn in chunks, so
                memory grows with the count by the images only (refused before any step where they cannot fit).
                x_T is drawn for the whole batch first, so a deterministic sampler (DDIM with eta = 0, DPM-Solver++)
                or one generator per image gives one batch's images; with one generator a stochastic sampler draws
                its z chunk after chunk. The callback sees each chunk's steps.
        """
        num_inference_steps, guidance_scale, guidance_interval = self.resolve_sampling(
            num_inference_steps, guidance_scale, guidance_interval)
        if timesteps is not None:
            num_inference_steps = len(timesteps)
        self._check_inputs(batch_size, num_inference_steps, output_type, class_labels, guidance_scale, guidance_interval,
                           generator, eta)
        self._check_call_extras(timesteps, callback_on_step_end_tensor_inputs)
        device = self._execution_device
        chunk = chunk_size(self.unet, batch_size, max_batch_size, guidance_scale != 1.0, device)
        labels = self._class_labels_tensor(class_labels, batch_size, device) if self._conditional else None
        latents = self._initial_latents(batch_size, generator, latents, device)  # x_T ~ N(0, I)
        for start in range(0, batch_size, chunk):  # each chunk's x_0 replaces its x_T
            part = slice(start, start + chunk)
            step_kwargs = self._step_kwargs(generator[part] if isinstance(generator, list) else generator, eta,
                                            use_clipped_model_output)
            latents[part] = self._denoise(latents[part], None if labels is None else labels[part], num_inference_steps,
                                          timesteps, guidance_scale, guidance_interval, step_kwargs,
                                          callback_on_step_end, callback_on_step_end_tensor_inputs)
        return self._finish(latents, output_type, return_dict)  # x_0, as images

    def _denoise(self, latents, labels, num_inference_steps, timesteps, guidance_scale, guidance_interval, step_kwargs,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",)):
        """x_T -> x_0 for one chunk: Algorithm 2's loop, the scheduler's state set afresh."""
        self.scheduler.set_timesteps(**({"num_inference_steps": num_inference_steps} if timesteps is None
                                        else {"timesteps": list(timesteps)}), device=latents.device)
        self._check_sigma_spacing(num_inference_steps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):  # for t = T, ..., 1
            model_output = self._noise_prediction(latents, t, labels, guidance_scale, guidance_interval)  # eps_theta
            step_output = self.scheduler.step(model_output, t, latents, **step_kwargs)  # x_{t-1} = mu_theta(x_t, t) + sigma_t z
            x_t, latents = latents, step_output.prev_sample
            if callback_on_step_end is not None:
                latents = self._run_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, i, t, x_t,
                                             latents, model_output, step_output)
        return latents

    @property
    def _conditional(self):
        return self.unet.config.get("num_class_embeds") is not None

    def _check_call_extras(self, timesteps, callback_on_step_end_tensor_inputs):
        """The arguments `_check_inputs` does not see: an explicit chain, and the tensors a callback asks for."""
        if timesteps is not None and "timesteps" not in inspect.signature(self.scheduler.set_timesteps).parameters:
            raise ValueError(f"{type(self.scheduler).__name__}.set_timesteps takes no explicit timesteps; "
                             "pass num_inference_steps, or swap in a scheduler that does (e.g. DDPMScheduler).")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {sorted(unknown)} not in {self._callback_tensor_inputs}.")

    def _initial_latents(self, batch_size, generator, latents, device):
        """x_T ~ N(0, I) (or the given one, checked), scaled by the scheduler's initial sigma (1 for DDPM/DDIM,
        larger for Euler)."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, height, width)
        latents_dtype = self._latents_dtype()
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=latents_dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}.")
        elif not bool(torch.isfinite(latents).all()):
            raise ValueError("latents hold NaN or inf; x_T must be finite (e.g. drawn from N(0, I)).")
        return latents.to(device=device, dtype=latents_dtype) * self.scheduler.init_noise_sigma

    def _run_callback(self, callback, tensor_inputs, i, t, x_t, latents, model_output, step_output):
        """Call `callback_on_step_end` with the tensors it asked for; return the latents it hands back (or ours)."""
        callback_kwargs = {"latents": latents} if "latents" in tensor_inputs else {}
        if "pred_original_sample" in tensor_inputs:  # x_0_hat from this step's x_t
            x0 = getattr(step_output, "pred_original_sample", None)
            callback_kwargs["pred_original_sample"] = (
                x0 if x0 is not None else predicted_original_sample(self.scheduler, model_output, t, x_t))
        callback_outputs = callback(self, i, t, callback_kwargs) or {}
        return callback_outputs.get("latents", latents)

    def _latents_dtype(self):
        """The chain x_T -> x_0 in float32 (float64 for a float64 U-Net) whatever the U-Net's dtype: the update
        x_{t-1} = coef_x0 x_0_hat + coef_xt x_t + sigma_t z adds up 1000 small steps that bf16 would round away."""
        return torch.float64 if self.unet.dtype == torch.float64 else torch.float32

    def _noise_prediction(self, latents, t, labels, guidance_scale=1.0, guidance_interval=None):
        """The network's output at x_t (eps_theta(x_t, t, y) for an epsilon model), in the latents' dtype.

        With classifier-free guidance (guidance_scale s != 1, a class-conditional U-Net) at a t inside
        guidance_interval (every t when it is None): one U-Net call on the doubled batch [x_t with y; x_t
        with "no class" (label K)], combined by `classifier_free_guidance` (Ho & Salimans 2022, eq. (6)).
        Elsewhere the conditional (or unconditional) model alone, on the plain batch.
        """
        model_input = self.scheduler.scale_model_input(latents, t).to(self.unet.dtype)
        t_low, t_high = guidance_interval if guidance_interval is not None else (0, self.scheduler.config.num_train_timesteps)
        if labels is not None and guidance_scale != 1.0 and t_low <= int(t) <= t_high:
            null = torch.full_like(labels, self.unet.config.num_class_embeds)
            output = self.unet(torch.cat([model_input, model_input]), t, class_labels=torch.cat([labels, null])).sample
            return classifier_free_guidance(*output.to(latents.dtype).chunk(2), guidance_scale)
        unet_kwargs = {} if labels is None else {"class_labels": labels}
        return self.unet(model_input, t, **unet_kwargs).sample.to(latents.dtype)

    def _finish(self, latents, output_type, return_dict):
        """x_0 in [-1, 1] -> [0, 1] -> the requested type ("L" PIL images for one-channel models); a sample that
        holds NaN or inf raises NonFiniteSampleError instead of turning into a black image."""
        broken = (~torch.isfinite(latents)).flatten(1).any(dim=1)
        if bool(broken.any()):
            raise NonFiniteSampleError(
                f"{int(broken.sum())} of {len(latents)} samples hold NaN or inf after the last step "
                f"({type(self.scheduler).__name__}): the U-Net's weights or the scheduler's settings produce "
                "non-finite numbers, so no images are returned."
            )
        images = self.image_processor.postprocess(latents.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    # ----------------------------------------------------------------------------------------
    # Saving: a folder that carries its own code
    # ----------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, safe_serialization: bool = True, variant=None, push_to_hub: bool = False, **kwargs):
        """Save weights (safetensors), configs (JSON) and the code files the folder needs to load
        without this package (see the module docstring). Pushing goes through `push_to_hub`."""
        if not safe_serialization:
            raise ValueError("Weights are saved as safetensors only; safe_serialization=False is not supported.")
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", Path(save_directory).name)
            self.save_pretrained(save_directory, variant=variant)
            if installed_module("hub") is None or kwargs.get("create_pr"):  # the cases push_to_hub leaves to diffusers
                return self.push_to_hub(repo_id, **kwargs)
            return self._push_folder(save_directory, repo_id, **kwargs)  # upload what was just saved
        super().save_pretrained(save_directory, safe_serialization=True, variant=variant, **kwargs)
        write_code_files(self, save_directory)

    def push_to_hub(self, repo_id, commit_message=None, private=None, token=None, create_pr=False, **kwargs):
        """Save the pipeline (code files, configs, safetensors weights) and upload it as one commit.

        With the package installed, the upload goes through `annotated_pipeline.hub`: the model
        card `README.md` is rendered from `templates/model_card.md` (pass `card_kwargs=dict(...)`,
        e.g. `training_args`, `dataset_name`, `samples_file`), the repo is created if needed, and
        an unreachable Hub raises `HubUnavailableError`. As remote code, diffusers' own push is used.
        """
        hub = installed_module("hub")
        if hub is None or create_pr:
            return super().push_to_hub(repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr, **kwargs)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return self._push_folder(folder, repo_id, commit_message=commit_message, private=private, token=token,
                                     folder_is_temporary=True, **kwargs)

    @staticmethod
    def _push_folder(folder, repo_id, commit_message=None, private=None, token=None, card_kwargs=None,
                     folder_is_temporary=False, **kwargs):
        """Upload a saved folder through `annotated_pipeline.hub` (card from templates/model_card.md)."""
        if kwargs:
            raise ValueError(f"Unexpected keyword arguments for push_to_hub: {sorted(kwargs)}.")
        return installed_module("hub").push_folder_to_hub(
            folder, repo_id, token=token, private=bool(private),
            commit_message=commit_message or "Upload AnnotatedDDPMPipeline", card_kwargs=card_kwargs,
            folder_is_temporary=folder_is_temporary,
        )

    # ----------------------------------------------------------------------------------------
    # Loading with the package installed (route 1)
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a saved pipeline (a local folder or a Hub repo id).

        With this package installed, the U-Net and scheduler are built from the installed classes
        (or diffusers' own models and schedulers, e.g. a swapped-in `DDIMScheduler`), and no code from
        the folder runs whatever its `model_index.json` names, so `trust_remote_code` is not needed
        (pipeline_loading.py). Passing `trust_remote_code=True` (or running this file as remote code)
        uses diffusers' loader, which runs the folder's code files.
        """
        installed = installed_component_classes()
        if not installed or kwargs.get("trust_remote_code"):
            kwargs.setdefault("use_safetensors", True)  # diffusers would fall back to a pickled .bin
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return load_with_installed_classes(cls, pretrained_model_name_or_path, installed, kwargs)
