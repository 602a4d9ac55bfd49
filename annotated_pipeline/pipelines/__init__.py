"""The sampling loop and what is built on it, as diffusers pipelines.

    pipeline.py              AnnotatedDDPMPipeline: Ho et al. 2020, Algorithm 2, with classifier-free guidance
    pipeline_inputs.py       every call argument checked before the first step
    pipeline_saving.py       a saved folder that carries its own code (generated at save time)
    pipeline_loading.py      loading a folder with the installed classes, running none of its code
    pipeline_editing.py      what the editing pipelines share (from_pipe, a sampler that can edit)
    pipeline_inpaint.py      RePaint (Lugmayr et al. 2022)
    pipeline_img2img.py      SDEdit (Meng et al. 2022)
    pipeline_interpolate.py  slerp of x_T and interpolation of class embeddings
    samplers.py              the sampler a call uses, by name ("default", "ddim", "dpmsolver", "ddpm")

The pipeline*.py files import only each other (relatively), so a saved folder can carry them as one file.
"""
