"""Reference fixtures for Easel's compat modes end to end: the final latents and the 8-bit images that
AUTOMATIC1111 and ComfyUI make for a few text-to-image settings with the tiny test model.

Owns: ``tests/fixtures/compat_images/`` — the case list below, the recording, and ``cases.json`` (the index).
Nothing of the upstream programs is copied into this project: prompt parsing, text conditioning, noise,
sigma schedules, the denoiser wrappers, classifier-free guidance and the samplers come from RUNNING the
upstream modules out of checkouts given on the command line (crowsonkb's k-diffusion and torchsde from the
pinned PyPI packages), with small stand-ins (installed into ``sys.modules`` here, through ``tooling.upstream``)
for the heavy modules they import. The networks are the tiny model of ``models/tiny-sd-torch`` run by
diffusers: ``UNet2DConditionModel`` stands in for LDM's ``UNetModel`` (A1111) and ComfyUI's ``comfy.ldm``
UNet, ``AutoencoderKL.decode`` for their first-stage decoders (same architecture and maths, float32 on the
CPU); the text encoder and both tools' conditioning are exactly ``tooling.ref_prompts``' (A1111
``prompt_parser`` + ``FrozenCLIPEmbedderWithCustomWords``; ComfyUI ``sd1_clip`` token weights).

A1111 (``StableDiffusionProcessingTxt2Img`` as ``process_images_inner`` runs it; processing.py itself is too
heavy to import, so its few lines around the sampler are followed here and listed in ``cases.json``):
conditioning from ``get_multicond_learned_conditioning`` / ``get_learned_conditioning`` over
``SdConditioning`` batches; ``p.rng = rng.ImageRNG((4, h/8, w/8), p.seeds, subseeds, subseed_strength)``;
``x = p.rng.next()``; ``sd_samplers_kdiffusion.KDiffusionSampler.sample`` (upstream: ``get_sigmas`` with
``sd_schedulers``, ``x * sigmas[0]``, ``initialize`` -> ``TorchHijack`` noise from ``ImageRNG.next()``,
``CFGDenoiserKDiffusion.forward`` -> k-diffusion ``CompVisDenoiser`` -> ``sd_model.apply_model``,
``combine_denoised``); decode per image through ``sd_samplers_common.decode_first_stage``; then
``clamp((x + 1) / 2, 0, 1)``, ``255. * x``, ``astype(np.uint8)``. The webui is taken as run in float32
(``--no-half``, as on a CPU): ``devices.dtype*`` are float32.

A1111 inpainting (the img2img inpaint-upload mode): processing.py's own ``StableDiffusionProcessingImg2Img`` (and
its base class), ``create_binary_mask``, ``create_random_tensors``, ``apply_overlay`` and ``uncrop``, images.py's
``resize_image`` / ``flatten`` (their definitions extracted from the pinned files with ``ast`` and run over
stand-ins for what those files import), ``masking.py`` and ``sd_samplers.create_sampler`` run as they are:
``p.init`` blurs the mask with OpenCV, crops for "only masked", builds the overlay, fills the masked content,
encodes and makes the latent mask; ``p.sample`` runs the sampler with the CFG denoiser's mask blend and blends
once more; ``apply_overlay`` after the uint8 conversion. process_images_inner's lines around them are followed
(listed in ``cases.json`` "substitutions").

ComfyUI (the KSampler node: ``nodes.common_ksampler`` -> ``comfy.sample.sample`` -> ``KSampler`` ->
``CFGGuider``): ``EmptyLatentImage`` zeros; ``comfy.sample.prepare_noise``; ``KSampler(...).sigmas``
(``calculate_sigmas`` over ``ModelSamplingDiscrete``); the upstream ``CFGGuider`` from ``inner_sample`` down
(``process_conds`` / ``encode_model_conds``, ``KSAMPLER.sample`` with ``noise_scaling`` and
``KSamplerX0Inpaint``, ``sampling_function`` -> ``calc_cond_batch`` -> ``cfg_function``,
``process_latent_out``); a ``BaseModel`` stand-in whose ``apply_model`` follows ``BaseModel._apply_model``
(``EPS.calculate_input``, ``ModelSamplingDiscrete.timestep``, the UNet, ``calculate_denoised``); decode:
``VAE.decode`` (``clamp((x + 1) / 2, 0, 1)``) and ``SaveImage`` (``255. * x``, ``np.clip``, ``astype``).

Upstream files used (commits and sha256 recorded in ``cases.json`` "source"; ``RUN`` = imported and run,
``READ`` = followed by the recording): see ``A1111_FILES`` / ``COMFYUI_FILES`` below (A1111 82a973c,
v1.10.1; Comfy-Org/ComfyUI a125cd8). A file whose content differs from the pinned one is recorded with
``"commit": null``.

Run from ``models/``::

    .venv/bin/python -m tooling.ref_compat_images --a1111 /path/to/stable-diffusion-webui \\
        --comfyui /path/to/ComfyUI ../tests/fixtures/compat_images

(or ``EASEL_A1111=... EASEL_COMFYUI=... models/sdtool reference compat_images tests/fixtures/compat_images``).

Writes per case ``<case>/settings.json`` (the request in Easel's vocabulary, nothing else),
``<case>/latents.npy`` ([B,4,h/8,w/8] float32: the sampler's result in the model's latent space, before
the decoder's 1/0.18215 scaling), ``<case>/noise.npy`` (the initial noise, before the sigma scaling),
``<case>/sigmas.npy`` (the schedule handed to the sampler function), ``<case>/image_<i>.png`` (the uint8
image), for image-to-image ``<case>/init.png`` and for inpainting ``<case>/mask.png`` (grey, 255 = repaint), and
``cases.json`` (its "schema" describes every file and key).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import tempfile
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import ref_kdiffusion as kd
from . import ref_prompts, upstream

RECORDER = "models/tooling/ref_compat_images.py"

# --------------------------------------------------------------------------------------------------
# Pinned upstream files: file -> (role, commit that last changed it at the checkout commit of
# tooling.upstream.CHECKOUTS, sha256 LF)
# --------------------------------------------------------------------------------------------------

RUN, READ = "run", "read"

# A1111's timestep samplers (DDIM, PLMS, ...) and LCM: kd's pins, run here too.
A1111_MORE_SAMPLER_FILES = {f: (RUN, *pin) for f, pin in {
    **kd.A1111_TIMESTEP_FILES, "modules/sd_samplers_lcm.py": kd.A1111_FILES["modules/sd_samplers_lcm.py"]}.items()}
A1111_FILES = {
    "modules/prompt_parser.py": (RUN, "d686e73daa6cca399fe68976922cabde681f69f1",
                                 "6525416d30d671c4f2a507176d13d56a155b8f2a6de06c915d5990facef71d26"),
    "modules/sd_hijack_clip.py": (RUN, "d686e73daa6cca399fe68976922cabde681f69f1",
                                  "951b191062d489b8928f0bc52ad408f889d15faed1865df6fc9788e6ccc2f781"),
    "modules/sd_emphasis.py": (RUN, "e3fa46f26f78c01969eaca2708be4e2b4928c5a2",
                               "c5bb622b86eb2848377a894029967a1e31be9c759ac62eacff70c2e95066dc73"),
    "modules/textual_inversion/textual_inversion.py": (RUN, "c5b7559856c5f64792c2425d11890a121497e6bc",
                                                       "bd39ec500357a6f94cfcb8cad9f7eb0c96cb088f4bd887e298994e295ace2749"),
    "modules/rng.py": (RUN, "e3fa46f26f78c01969eaca2708be4e2b4928c5a2",
                       "ccd5bf87e37cb8ddb0b0424f7bd94e464fd021b866deca56401eedcd91d2d190"),
    "modules/rng_philox.py": (RUN, "0904df84e296c10fe0ccb37a3b689e6b96d87e41",
                              "3f711d9e17488e9bdedefa06345d4085b8659331b5778454b0e40eaf9c128b5f"),
    "modules/sd_samplers_kdiffusion.py": (RUN, "874954060297d847bf30cc5d220effe80ac18968",
                                          "dfea07c3b6cc0af999add570bc0bb7249b0d6f86a71fbacb7d144a8dd1980555"),
    "modules/sd_samplers_cfg_denoiser.py": (RUN, "0a6628bad0615a640efd99937eb6d10d6d648975",
                                            "7a3126d2d1bffb657fcc7b7d197af77add52ef5c3c88c913f3d34217a7027ef9"),
    "modules/sd_samplers_common.py": (RUN, "a8fba9af35a081ada8c563fc6c76212dd131be01",
                                      "d5a5ead146fd150164a1acfb300a1f9694b6a4d8d93b25adeac3928840fb344e"),
    "modules/sd_samplers_extra.py": (RUN, "066afda2f6f650fe108d285a239d08d59d92590d",
                                     "5f673c435dab251f1bc1f7273be88e0993b6a0a9660c3ae5e1c5a57dd3890181"),
    "modules/sd_schedulers.py": (RUN, "f6f055a93df4fb1a59fa8f28e3b8f092fd7ba511",
                                 "9e7e3d9102f9d0c6c1acdd09a94b19251b8e0ac25dd03f417e39564420366e57"),
    "modules/script_callbacks.py": (RUN, "bba306d414f1e81c979ae53271c022df08ef7388",
                                    "d2d2f35509e82ff80a93336ee23108fd038000af8fdcb9f6354ba314fd6d71d5"),
    "modules/shared_options.py": (READ, "5a10bb9aa6d4a46f5e14fa43648f4cb08ae1275b",
                                  "84d2e1e02e18028f022e55978f0838d5b3a8bbe453066326263dde02d3020525"),
    "configs/v1-inference.yaml": (READ, "022d835565f253841f7f9272ba320bb0cec4770d",
                                  "1e1f2fe98489309e3c2ab847c720f8cb016807c39ffdaea3df5dc7358991baa9"),
    # the hires fix's Lanczos upscaler (Upscaler.upscale, UpscalerLanczos), run through images.resize_image
    "modules/upscaler.py": (RUN, "964fc13a99d47263d023f4e3116ac2c220acec88",
                            "d0dc35f609cecba6658d3c983d73fab30682fb1884042ef493c304bace3566f4"),
    # the inpainting model's LatentDiffusion conditioning key ("hybrid")
    "configs/v1-inpainting-inference.yaml": (READ, "022d835565f253841f7f9272ba320bb0cec4770d",
                                             "392997f230c9797eab91041b2e3a1e9694a839a50b3d4e7acf9c718f75037eb3"),
    "modules/shared.py": (READ, "13f22974a42df9f7a491fefe2912cdf72dcbebaf",
                          "1595fc437fdcf4fa73e9d40096b25f923714f7ec821591b883fd230ff7b97e16"),
    # run since the inpainting cases: StableDiffusionProcessing / StableDiffusionProcessingImg2Img,
    # create_binary_mask, create_random_tensors, apply_overlay, uncrop (upstream.defs_from_source)
    "modules/processing.py": (RUN, "d67348a0a54a4d4c612673d3622ef0a617036646",
                              "62cddd2d3c3913bd05fc33c39aed48ddf5274ed6e6c5326ee56e7f7b8b3ab144"),
    "modules/sd_hijack_unet.py": (READ, "ffead92d4e36a5082fa6ac5dd54c88477c9b524e",
                                  "799b08d59a835ee0c8454e18786078e6eecce2a9337151f8c3422cb4acf1ff1c"),
    # The inpainting cases' files, pinned by git blob id (git hash-object) at the checkout commit.
    "modules/masking.py": (RUN, upstream.Blob("2fc83031953c33fd615d081ef214363eaf08c25c"),
                           "05886371981617b65b55ffd8195d10ec7b03835daee12340564f093e1b5e76c5"),
    "modules/images.py": (RUN, upstream.Blob("cfdfb338446a748642fe48b3ffe7bad7e8d462b5"),  # resize_image, flatten
                          "37145bf589c76e105affaf0599c8f8c6cb96a1279c25d75f89c64a11f1f9be69"),
    "modules/sd_samplers.py": (RUN, upstream.Blob("963da5be0bfb970338ef4d56364bfee0a4ed7733"),  # create_sampler
                               "affbc90a33a094955f40a00c47f68db1e46a6fc4d9abdc25bb15e34e5faf45cd"),
    "modules/img2img.py": (READ, upstream.Blob("24f869f5c6a9660b959e152596dcd86f61621787"),  # the UI's p fields
                           "5419b9f5571e52696f010d5180af912440f02d53a3c94953b84dd123773016b4"),
    "modules/devices.py": (READ, upstream.Blob("ee679141ad7f7e4f6d6d94e86562ed2dc56a7c5d"),  # torch_gc, cond_cast_float
                           "6ec270d435445fc81101060bffff6220700355db6743bb5996dba20931b3558d"),
}
COMFYUI_FILES = {
    "comfy/sd1_clip.py": (RUN, "5a8f502db5889873ffa13132b603b7b6daac605a",
                          "699ac0ac2ce16b31f0ad4933e0c595843886304cdaf456739d3c5a3a3b36da9c"),
    "comfy/sample.py": (RUN, "a618f768e06d72acc5b97d78a9ae209cbae14654",
                        "5e97452ec4f29e558c60fd2d050a2705f4dc5bca661c2b0f2de49edcfd1b6e6f"),
    "comfy/samplers.py": (RUN, "196954ab8c55bc4ac48113686a57ce250677c7b5",
                          "23d5c6d83bc4649833e8c79f61418288c380d0b14aaa8ca6063950fff36c844b"),
    "comfy/sampler_helpers.py": (RUN, "e4f7ea105f4b3034593f316560d952b80453e344",
                                 "eee411e01b12017962f0ba36b3a7041dab20186081a06eb5bab059c694089316"),
    "comfy/k_diffusion/sampling.py": (RUN, "1a85483da159f2800407ae5a8a45eb0d88ffce2d",
                                      "6bce1a552e847c6c65c6f134cdc9b5a68d5f93586872b709d376c6f9c2591a12"),
    "comfy/k_diffusion/utils.py": (RUN, "2b14041d4bda0b05f6b5277b37b845e719fcf3dc",
                                   "fc30630d8a0e4520b2e864c8f84deea3231c9b04d3f1404fec93fc425f629272"),
    "comfy/k_diffusion/deis.py": (RUN, "d9d7f3c6199d4d0547dff1410ca8fb3d9215f43e",
                                  "8d4e5057a062b77ef2e33af8208a2d6a3c3fbb431315a4c37689a307d66bc807"),
    "comfy/k_diffusion/sa_solver.py": (RUN, "aac10ad23a8f65243fcfca7afa7a72c1740312d6",
                                       "84f54b743f6491ea8e0a8ff21db88579016e374c9b7a05b3d84c3ac4454af461"),
    "comfy/extra_samplers/uni_pc.py": (RUN, "507199d9a8902f9dd35a90d4bd2fc3b12cdf54f1",
                                       "62a3bc207d60d10fc2700459c2090961ffa9f1199f1f1213ade0e4b97be6b04c"),
    "comfy/model_sampling.py": (RUN, "6e59934089df3375e39db174340b6a937b226c83",
                                "127dd382157084b35d7500c83552bb40c0b9287ed09096ee699dd3695aa7c04a"),
    "comfy/ldm/modules/diffusionmodules/util.py": (RUN, "d7969cb070f9a59663d0b4ce7aabe7d49e236fc3",
                                                   "18db468ff259fda6737c0aee17a9d007d08b0067945e9164fd5d0221926a671e"),
    "comfy/latent_formats.py": (RUN, "c1297f4eb38a63e2f99c9fa76e32e3a36c933b85",
                                "9979565e55598de60c65b271585b25b415773bef47f56de37aa6ed416afcd640"),
    "comfy/conds.py": (RUN, "84f9759424ccbd8de710960c79f0f1d28eef2776",
                       "be2e5766726d9cf3a886b610a986a548f1c05f74d788f328c022ca0c56b7b9b0"),
    "comfy/utils.py": (RUN, "4293e4da214f77a3fde97c15f0691307e61bc18d",
                       "b7b95a92a04dca297fd183a7105b89a8c8d78807d282ab670abeb5c6b9b767d4"),
    "comfy/cli_args.py": (RUN, "ea6cdd2631fbca6ed81b95796150c32c9a029f0d",
                          "403f75fad8c9ffd0cd6e28531e5bafc5c4024eef868b232f6f95ca40e1ebbb20"),
    "comfy/options.py": (RUN, "3039b08eb16777431946ed9ae4a63c5466336bff",
                         "a9d0bb41f5b8d393efc264e83e5f3003ce52c87aca585c0e8ab97bbaea87c8bb"),
    "comfy/checkpoint_pickle.py": (RUN, "735ac4cf81862b21902b312930ebfc92eef63357",
                                   "3653f99ff696078e546d30175c43b46a28af0d6d780170b113d6c6327769940e"),
    "comfy/patcher_extension.py": (RUN, "fc247150fec502b1834390516b556a87003f1d79",
                                   "31508b469685b1eaa36ad9087c047acc3755f56ecdd7ec408a0b09395daf8880"),
    "comfy/model_patcher.py": (RUN, "f1dd6e50f891b1d2b17e4b8d26d422634fe49595",
                               "7db37893ed49eb7fa4fce9bfaf1446615d57665951769384f43178b9985648aa"),
    "node_helpers.py": (RUN, "4202e956a0172178f5d4ce1971da8c07c93420a9",
                        "5ee43a50f57b84c64781f1bcfeb717d17ee2d07038d5d7d75eb788898fb72de0"),
    "nodes.py": (RUN, "81e4dac107c24b1655babc47c99c33551c96a644",
                 "88f3c18338cfc2dc6b5bef1a24dbe9f49898e23ef01df05093189ae2e432d3d7"),
    "comfy/sd.py": (RUN, "84e9ce32c6d9d340404ee0798a426dae52bbee8b",
                    "00579b03a415ef2f152da12fbf1cbe3d22aa465ac591cc7ee7dbd95633260eee"),
    # BaseModel's extra_conds / concat_cond / encode_adm / set_inpaint run (upstream.class_from_source)
    "comfy/model_base.py": (RUN, "dc95b6acc0ef4962460592d417db4024f7160586",
                            "91edb703aebe1d521f9ea15d4a2b36f12705aae684520afe14a965f28694060a"),
}
# A1111 options the recording reads (modules.shared.opts): the sampling ones of ref_kdiffusion and the ones
# CFGDenoiser.forward, store_latent, decode_first_stage and setup_conds read. Defaults from shared_options.py.
A1111_OPT_KEYS = [*kd.A1111_OPT_KEYS, "refiner_switch_by_sample_steps", "s_min_uncond_all", "pad_cond_uncond",
                  "pad_cond_uncond_v0", "batch_cond_uncond", "live_preview_content", "live_previews_enable",
                  "show_progress_every_n_steps", "show_progress_type", "live_preview_fast_interrupt",
                  "sd_vae_decode_method", "use_old_scheduling", "img2img_fix_steps", "img2img_extra_noise",
                  "initial_noise_multiplier", "sd_vae_encode_method",
                  # inpainting: Img2Img.init, images.resize_image, process_images_inner's overlay, sd_samplers
                  "img2img_color_correction", "save_init_img", "img2img_background_color", "upscaler_for_img2img",
                  "overlay_inpaint", "hide_samplers",
                  # the inpainting model's conditioning: inpainting_image_conditioning
                  "inpainting_mask_weight"]

# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------

PROMPT = "a red fox in the snow, (watercolor:1.2)"
NEGATIVE = "blurry"
STEPS = 6
CFG = 7.0
SIZE = 64


@dataclass
class Settings:
    """One request, in Easel's request vocabulary (the keys of ``GenerateRequest``); nothing else."""
    seed: int
    batch_size: int
    compat: str  # "a1111" | "comfyui"
    sampler: str  # the tool's own name: A1111 display name ("Euler a"), ComfyUI sampler name ("euler_ancestral")
    schedule: str  # A1111 "Schedule type" label ("Automatic", "Karras"), ComfyUI scheduler name
    randn_source: str | None = None  # Easel's names: "nv" | "cpu" (A1111's opts.randn_source "NV" | "CPU")
    subseed: int | None = None
    subseed_strength: float = 0.0
    prompt: str = PROMPT
    negative_prompt: str = NEGATIVE
    steps: int = STEPS
    cfg_scale: float = CFG
    width: int = SIZE
    height: int = SIZE
    prompt_syntax: str = ""  # "a1111" | "comfyui": set from compat
    # Image-to-image: A1111's denoising_strength / ComfyUI's KSampler denoise, over the VAE encoding of the
    # case's init.png.
    strength: float | None = None
    # ComfyUI's KSamplerAdvanced window, in Easel's request vocabulary (start_at_step, end_at_step, add_noise,
    # return_with_leftover_noise); None for a KSampler.
    sampling_range: dict | None = None
    # ComfyUI's chain: more KSamplerAdvanced nodes after the first, each over the LATENT the one before returned,
    # in Easel's request vocabulary ({"sampling_range", "seed", "steps", "cfg_scale", "sampler", "schedule", "prompt",
    # "negative_prompt"}; absent ones are the request's; a stage's prompts are its own CLIPTextEncode nodes). Request
    # key stages.
    stages: tuple = ()
    # ComfyUI image-to-image: the size of the case's init.png when it differs from width x height; the
    # graph then scales it with ImageScale (lanczos, no crop) before VAEEncode. Not a request key.
    init_size: tuple[int, int] | None = None
    # ComfyUI: init_size's picture (sides not multiples of 8) goes straight into VAEEncode / VAEEncodeForInpaint,
    # which cut it to multiples of 8, centred (VAE.vae_encode_crop_pixels in comfy/sd.py; the node's own cut);
    # width x height are the cut size. Not a request key: the case's "graph" entry names it.
    init_crop: bool = False
    # ComfyUI image-to-image with a latent noise mask: the case's mask.png (grey, 255 = repaint) through
    # LoadImageMask (channel red) and SetLatentNoiseMask. Not a request key (the mask is an upload). A1111: the
    # mask of its inpainting (StableDiffusionProcessingImg2Img's mask, the same mask.png), with the four keys below.
    masked: bool = False
    # A1111 inpainting, in Easel's request vocabulary: mask_blur (p.mask_blur, OpenCV's Gaussian blur along x
    # then y), masked_content ("fill" | "original" | "latent_noise" | "latent_nothing": p.inpainting_fill 0..3),
    # inpaint_area ("whole" | "only_masked": p.inpaint_full_res) and inpaint_padding (only_masked's
    # p.inpaint_full_res_padding). With only_masked the images have init_size, the init picture's size.
    mask_blur: int | None = None
    masked_content: str | None = None
    inpaint_area: str | None = None
    inpaint_padding: int | None = None
    # ComfyUI's VAEEncodeForInpaint in place of VAEEncode + SetLatentNoiseMask, with this grow_mask_by: the
    # masked pixels grey before encoding, the noise mask grown and rounded. Request keys masked_content "grey"
    # and mask_grow.
    mask_grow: int | None = None
    # ComfyUI image-to-image through ImageInvert (nodes.py's own) then ImageScaleBy (lanczos, by this factor, to
    # width x height from init_size) before VAEEncode. Not request keys: the case's "graph" entry names them.
    invert_then_scale_by: float | None = None
    # ComfyUI outpainting: init_size's picture through ImagePadForOutpaint (nodes.py's own) with these
    # (left, top, right, bottom, feathering), into VAEEncodeForInpaint with the pad's mask (no mask.png). Not
    # request keys: the case's "graph" entry names them.
    pad: tuple[int, int, int, int, int] | None = None
    # ComfyUI's two-pass ("hires fix") graph, in Easel's request vocabulary: {"scale", "strength", "steps",
    # "upscaler" ("latent" = bilinear, "latent-nearest-exact"), "seed"}: the first KSampler's LATENT through
    # LatentUpscaleBy (scale_by = scale; hires_node "LatentUpscale": to the scaled width and height) and a
    # second KSampler (its own seed and steps, denoise = strength). hires_node is not a request key.
    hires: dict | None = None
    hires_node: str = "LatentUpscaleBy"
    # ComfyUI's LatentFromBatch(batch_index, length = batch_size) over an EmptyLatentImage of batch_index +
    # batch_size images: the start noise of those images of the larger batch. Request key batch_index.
    batch_index: int | None = None
    # ComfyUI's ConditioningCombine (nodes.py's own) of CLIPTextEncode(prompt) with each of these prompts' encodings:
    # the KSampler's positive conditioning is the list of them (calc_cond_batch averages their predictions).
    # Request key combined_prompts.
    combined_prompts: tuple[str, ...] = ()
    # ComfyUI's conditioning lists, in Easel's request vocabulary ({"positive": [entry], "negative": [entry]}, an
    # entry {"encoding": expr, "area": {"x", "y", "width", "height"}, "strength"}, an expr {"text": t} |
    # {"concat": {"to", "from"}} | {"average": {"to", "from", "to_strength"}}), built with nodes.py's own
    # CLIPTextEncode outputs, ConditioningConcat, ConditioningAverage, ConditioningSetArea and ConditioningCombine.
    # Request key conditioning.
    conditioning: dict | None = None
    # The ONNX folder under models/ whose torch twin runs (request key model): "tiny-sd-inpaint" is the same model
    # with a 9-channel inpainting UNet (A1111: a 'hybrid' LatentDiffusion as configs/v1-inpainting-inference.yaml
    # makes it; ComfyUI: BaseModel.set_inpaint).
    model: str = "tiny-sd"

    def __post_init__(self):
        self.prompt_syntax = self.prompt_syntax or self.compat

    def request(self) -> dict:
        """settings.json: the request's keys in Easel's order (``strength`` only for image-to-image;
        the init image itself is the case's ``init.png``)."""
        d = asdict(self)
        out = {k: d[k] for k in REQUEST_KEYS}
        if self.strength is not None:
            out["strength"] = self.strength
        if self.mask_blur is not None:
            out["mask_blur"] = self.mask_blur
        if self.sampling_range is not None:
            out["sampling_range"] = dict(self.sampling_range)
        if self.stages:
            out["stages"] = [dict(stage) for stage in self.stages]
        if self.mask_grow is not None:
            out["masked_content"] = "grey"
            out["mask_grow"] = self.mask_grow
        if self.masked_content is not None:
            out["masked_content"] = self.masked_content
        if self.inpaint_area is not None:
            out["inpaint_area"] = self.inpaint_area
        if self.inpaint_padding is not None:
            out["inpaint_padding"] = self.inpaint_padding
        if self.hires is not None:
            out["hires"] = dict(self.hires)
        if self.batch_index is not None:
            out["batch_index"] = self.batch_index
        if self.combined_prompts:
            out["combined_prompts"] = list(self.combined_prompts)
        if self.conditioning is not None:
            out["conditioning"] = self.conditioning
        if self.model != "tiny-sd":
            out["model"] = self.model
        return out


def init_image(width: int, height: int) -> np.ndarray:
    """The image-to-image cases' picture: smooth colour ramps with a ring, uint8 [h, w, 3]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.hypot(x - width / 2, y - height / 2)
    rgb = np.stack([255 * x / (width - 1), 255 * y / (height - 1), 127.5 + 127.5 * np.cos(r / 4)], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def mask_image(width: int, height: int) -> np.ndarray:
    """The masked cases' mask: a disk right of centre with a soft edge, uint8 [h, w] (255 = repaint)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.hypot(x - 0.6 * width, y - 0.5 * height)
    return np.clip(np.rint(255 * (0.35 * min(width, height) - r) / 6 + 127.5), 0, 255).astype(np.uint8)


REQUEST_KEYS = ["prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "batch_size", "compat",
                "sampler", "schedule", "randn_source", "subseed", "subseed_strength", "prompt_syntax"]


@dataclass
class Case:
    name: str
    what: str
    settings: Settings


CASES = [
    Case("a1111_euler_a_automatic_s42_b2", "A1111 Euler a (Automatic: k-diffusion's own schedule), two images "
         "seeded 42 and 43, CPU noise, ancestral noise from each image's generator",
         Settings(seed=42, batch_size=2, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu")),
    Case("a1111_dpmpp_2m_karras_s7_nv", "A1111 DPM++ 2M Karras, NV (Philox) noise, deterministic sampler",
         Settings(seed=7, batch_size=1, compat="a1111", sampler="DPM++ 2M", schedule="Karras", randn_source="nv")),
    Case("a1111_euler_automatic_s1234_b2_var99", "A1111 Euler, variation seed 99 at strength 0.3: both images use "
         "seed 1234 (all_seeds are not seed + i when the strength is > 0), slerped with subseeds 99 and 100",
         Settings(seed=1234, batch_size=2, compat="a1111", sampler="Euler", schedule="Automatic", randn_source="cpu",
                  subseed=99, subseed_strength=0.3)),
    Case("a1111_dpmpp_2m_sde_karras_s5_b2_nv", "A1111 DPM++ 2M SDE Karras, NV noise: one torchsde Brownian tree per "
         "image (entropy 5 and 6) whose nodes draw A1111's randn_local (Philox)",
         Settings(seed=5, batch_size=2, compat="a1111", sampler="DPM++ 2M SDE", schedule="Karras", randn_source="nv")),
    Case("comfyui_euler_ancestral_normal_s42_b2", "ComfyUI euler_ancestral / normal, batch 2: one CPU draw for the "
         "batch, step noise from default_noise_sampler(x, seed)",
         Settings(seed=42, batch_size=2, compat="comfyui", sampler="euler_ancestral", schedule="normal")),
    Case("comfyui_dpmpp_2m_karras_s7", "ComfyUI dpmpp_2m / karras",
         Settings(seed=7, batch_size=1, compat="comfyui", sampler="dpmpp_2m", schedule="karras")),
    Case("comfyui_dpmpp_2m_sde_karras_s5_b2", "ComfyUI dpmpp_2m_sde / karras, batch 2: one Brownian tree for the "
         "batch (entropy 5), on the CPU",
         Settings(seed=5, batch_size=2, compat="comfyui", sampler="dpmpp_2m_sde", schedule="karras")),
    Case("comfyui_img2img_euler_ancestral_normal_d06_s9_b2", "ComfyUI image-to-image: LoadImage -> VAEEncode (the "
         "posterior's mean) -> RepeatLatentBatch 2 -> KSampler euler_ancestral / normal, denoise 0.6 (the last 7 of "
         "an int(6 / 0.6) = 10-step schedule), noise * sigma0 + latent",
         Settings(seed=9, batch_size=2, compat="comfyui", sampler="euler_ancestral", schedule="normal", strength=0.6)),
    Case("comfyui_dpmpp_2m_cfg_pp_karras_s4", "ComfyUI dpmpp_2m_cfg_pp / karras: CFG++, the post-CFG hook hands the "
         "sampler the unconditional prediction",
         Settings(seed=4, batch_size=1, compat="comfyui", sampler="dpmpp_2m_cfg_pp", schedule="karras")),
    Case("comfyui_dpmpp_2s_ancestral_cfg_pp_normal_s6", "ComfyUI dpmpp_2s_ancestral_cfg_pp / normal: CFG++ with the "
         "second call's unconditional prediction in the final update, ancestral noise",
         Settings(seed=6, batch_size=1, compat="comfyui", sampler="dpmpp_2s_ancestral_cfg_pp", schedule="normal")),
    Case("comfyui_heun_simple_s3", "ComfyUI heun / simple (two model evaluations per step but the last)",
         Settings(seed=3, batch_size=1, compat="comfyui", sampler="heun", schedule="simple")),
    Case("a1111_dpm_fast_automatic_s11_nv", "A1111 DPM fast: DPM-Solver over the model's whole sigma range, eta 1 "
         "(ancestral noise from each image's Philox generator)",
         Settings(seed=11, batch_size=1, compat="a1111", sampler="DPM fast", schedule="Automatic", randn_source="nv")),
    Case("a1111_dpm_adaptive_karras_s12_b2", "A1111 DPM adaptive, batch 2, CPU noise: the error controller picks the "
         "steps (one error over the whole batch), eta 1",
         Settings(seed=12, batch_size=2, compat="a1111", sampler="DPM adaptive", schedule="Karras", randn_source="cpu")),
    Case("a1111_restart_automatic_s13_20steps", "A1111 Restart at 20 steps: Heun down a rebuilt 11-step Karras "
         "schedule with one 10-step restart from sigma 0.1 back to 2 (fresh noise from the image's generator)",
         Settings(seed=13, batch_size=1, compat="a1111", sampler="Restart", schedule="Automatic", randn_source="nv",
                  steps=20)),
    Case("a1111_img2img_euler_a_automatic_d06_s16_b2", "A1111 image-to-image: denoising strength 0.6 (t_enc = "
         "int(0.6 * 6) = 3: the last 4 sigmas of the 6-step schedule), init latent + noise * sigma_sched[0], batch 2 "
         "(seeds 16 and 17), CPU noise, ancestral noise from each image's generator",
         Settings(seed=16, batch_size=2, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  strength=0.6)),
    Case("a1111_ddim_automatic_s21_b2", "A1111 DDIM (a timestep sampler: CompVisSampler over the model's own "
         "timesteps range(0, 1000, 1000 // 6) + 1 = 1, 167, ..., 997, seven for six steps, walked down to the "
         "second: six UNet calls; eta 0), batch 2 (seeds 21 and 22), CPU noise; the UNet gets whole timesteps and "
         "guidance combines the noise predictions",
         Settings(seed=21, batch_size=2, compat="a1111", sampler="DDIM", schedule="Automatic", randn_source="cpu")),
    Case("a1111_plms_automatic_s23_nv", "A1111 PLMS, NV noise: the first step calls the UNet twice (pseudo "
         "improved Euler), then Adams-Bashforth of order 2 to 4",
         Settings(seed=23, batch_size=1, compat="a1111", sampler="PLMS", schedule="Automatic", randn_source="nv")),
    Case("a1111_img2img_ddim_automatic_d06_s24", "A1111 image-to-image with DDIM: denoising strength 0.6 (t_enc = "
         "int(0.6 * 6) = 3: the timesteps 1, 167, 333 walked, the latents noised to timestep 499)",
         Settings(seed=24, batch_size=1, compat="a1111", sampler="DDIM", schedule="Automatic", randn_source="cpu",
                  strength=0.6)),
    Case("a1111_lcm_automatic_s25_nv", "A1111 LCM (Automatic: LCMCompVisDenoiser.get_sigmas over its 50-entry "
         "table of timesteps 19, 39, ..., 999; the denoiser's boundary-condition scalings), NV noise between steps",
         Settings(seed=25, batch_size=1, compat="a1111", sampler="LCM", schedule="Automatic", randn_source="nv")),
    Case("a1111_unipc_automatic_s26_b2", "A1111 UniPC (its uni_pc.py: B(h) = h, order 3, time-uniform steps in "
         "continuous time over the discrete alphas_cumprod; len(get_timesteps(6)) = 7 steps), batch 2, CPU noise",
         Settings(seed=26, batch_size=2, compat="a1111", sampler="UniPC", schedule="Automatic", randn_source="cpu")),
    Case("a1111_img2img_unipc_automatic_d075_s27", "A1111 image-to-image with UniPC: strength 0.75 (t_enc = 4: the "
         "latents noised to timestep 667, UniPC's 4 steps from t = 501 / 1000 + 0.001)",
         Settings(seed=27, batch_size=1, compat="a1111", sampler="UniPC", schedule="Automatic", randn_source="nv",
                  strength=0.75)),
    Case("comfyui_advanced_euler_normal_s28_end4_leftover", "ComfyUI KSamplerAdvanced: steps 6, end_at_step 4 "
         "with return_with_leftover_noise enabled (the schedule cut after its fifth sigma, which stays: the picture "
         "keeps the noise left at step 4)",
         Settings(seed=28, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  sampling_range={"start_at_step": 0, "end_at_step": 4, "add_noise": True,
                                  "return_with_leftover_noise": True})),
    Case("comfyui_advanced_euler_ancestral_normal_s30_b2_end4", "ComfyUI KSamplerAdvanced: steps 6, end_at_step 4, "
         "leftover noise disabled (the fifth sigma set to 0: a full denoise in four steps), batch 2, ancestral noise",
         Settings(seed=30, batch_size=2, compat="comfyui", sampler="euler_ancestral", schedule="normal",
                  sampling_range={"start_at_step": 0, "end_at_step": 4, "add_noise": True,
                                  "return_with_leftover_noise": False})),
    Case("comfyui_advanced_img2img_dpmpp_2m_karras_s29_start2", "ComfyUI KSamplerAdvanced over VAEEncode: steps 6 "
         "from start_at_step 2 (noise * sigma_2 + latent)",
         Settings(seed=29, batch_size=1, compat="comfyui", sampler="dpmpp_2m", schedule="karras", strength=1.0,
                  sampling_range={"start_at_step": 2, "end_at_step": 10000, "add_noise": True,
                                  "return_with_leftover_noise": False})),
    Case("comfyui_advanced_img2img_euler_simple_s31_start3_no_noise", "ComfyUI KSamplerAdvanced over VAEEncode "
         "with add_noise disabled: the clean latent itself denoised from step 3 of 6 (zero noise)",
         Settings(seed=31, batch_size=1, compat="comfyui", sampler="euler", schedule="simple", strength=1.0,
                  sampling_range={"start_at_step": 3, "end_at_step": 10000, "add_noise": False,
                                  "return_with_leftover_noise": False})),
    Case("comfyui_sa_solver_normal_s32_b2", "ComfyUI sa_solver / normal, batch 2: stochastic Adams predictor-"
         "corrector, fresh noise (default_noise_sampler) while sigma lies between percent_to_sigma(0.2) and (0.8)",
         Settings(seed=32, batch_size=2, compat="comfyui", sampler="sa_solver", schedule="normal")),
    Case("comfyui_sa_solver_pece_karras_s33", "ComfyUI sa_solver_pece / karras: the model evaluated again after "
         "each correction",
         Settings(seed=33, batch_size=1, compat="comfyui", sampler="sa_solver_pece", schedule="karras")),
    Case("comfyui_img2img_image_scale_lanczos_euler_normal_d07_s34", "ComfyUI image-to-image through ImageScale: "
         "an 80x56 LoadImage scaled to 64x64 with lanczos (PIL's, no crop), VAEEncode, KSampler euler / normal at "
         "denoise 0.7",
         Settings(seed=34, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", strength=0.7,
                  init_size=(80, 56))),
    Case("comfyui_inpaint_latent_mask_euler_ancestral_normal_d08_s35_b2", "ComfyUI inpainting with a latent noise "
         "mask: LoadImage -> VAEEncode -> SetLatentNoiseMask (LoadImageMask, channel red, of a soft disk) -> "
         "RepeatLatentBatch 2 -> KSampler euler_ancestral / normal at denoise 0.8 (KSamplerX0Inpaint: outside the "
         "mask the latents are the init's noised to each sigma, and the init's after each call)",
         Settings(seed=35, batch_size=2, compat="comfyui", sampler="euler_ancestral", schedule="normal", strength=0.8,
                  masked=True)),
    Case("comfyui_inpaint_latent_mask_ddim_simple_s36", "ComfyUI inpainting with a latent noise mask and ddim "
         "(Euler with its own inpainting noise, drawn from seed + 1), full denoise",
         Settings(seed=36, batch_size=1, compat="comfyui", sampler="ddim", schedule="simple", strength=1.0,
                  masked=True)),
    Case("comfyui_inpaint_vae_encode_for_inpaint_euler_normal_s37", "ComfyUI inpainting through "
         "VAEEncodeForInpaint (grow_mask_by 6): the pixels under the rounded mask set to grey before encoding, the "
         "noise mask the rounded mask grown by a 6x6 box, KSampler euler / normal at full denoise",
         Settings(seed=37, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", strength=1.0,
                  masked=True, mask_grow=6)),
    Case("comfyui_inpaint_vae_encode_for_inpaint_dpmpp_2m_karras_d09_s38_b2", "ComfyUI VAEEncodeForInpaint with "
         "grow_mask_by 3 (an odd box), RepeatLatentBatch 2, KSampler dpmpp_2m / karras at denoise 0.9",
         Settings(seed=38, batch_size=2, compat="comfyui", sampler="dpmpp_2m", schedule="karras", strength=0.9,
                  masked=True, mask_grow=3)),
    Case("comfyui_img2img_invert_scale_by_lanczos_euler_a_karras_d07_s39", "ComfyUI image-to-image through "
         "ImageInvert (1 - pixels) and ImageScaleBy (lanczos, 0.8: an 80x80 LoadImage to 64x64; the inverted floats "
         "truncated to 8 bits for PIL), VAEEncode, KSampler euler_ancestral / karras at denoise 0.7",
         Settings(seed=39, batch_size=1, compat="comfyui", sampler="euler_ancestral", schedule="karras",
                  strength=0.7, init_size=(80, 80), invert_then_scale_by=0.8)),
    Case("comfyui_outpaint_pad_vae_encode_for_inpaint_euler_normal_s40", "ComfyUI outpainting: a 48x40 LoadImage "
         "through ImagePadForOutpaint (left 16, top 8, bottom 16, feathering 12) to 64x64, VAEEncodeForInpaint with "
         "the pad's mask (grow_mask_by 8), KSampler euler / normal at full denoise",
         Settings(seed=40, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", strength=1.0,
                  init_size=(48, 40), masked=True, mask_grow=8, pad=(16, 8, 0, 16, 12))),
    Case("comfyui_two_pass_latent_upscale_by_bilinear_euler_normal_s41", "ComfyUI's two-pass graph: KSampler euler "
         "/ normal, LatentUpscaleBy (bilinear, 1.5: 64x64 to 96x96), a second KSampler with seed 141, 4 steps, "
         "denoise 0.5",
         Settings(seed=41, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  hires={"scale": 1.5, "strength": 0.5, "steps": 4, "upscaler": "latent", "seed": 141})),
    Case("comfyui_two_pass_latent_upscale_nearest_exact_dpmpp_2m_karras_s42_b2", "ComfyUI's two-pass graph, batch "
         "2: KSampler dpmpp_2m / karras, LatentUpscale (nearest-exact, to 128x128), a second KSampler with the same "
         "seed and steps at denoise 0.6",
         Settings(seed=42, batch_size=2, compat="comfyui", sampler="dpmpp_2m", schedule="karras",
                  hires={"scale": 2.0, "strength": 0.6, "steps": 0, "upscaler": "latent-nearest-exact", "seed": 42},
                  hires_node="LatentUpscale")),
    Case("comfyui_latent_from_batch_euler_ancestral_normal_s43_i2_b2", "ComfyUI LatentFromBatch (batch_index 2, "
         "length 2) of a 4-image EmptyLatentImage: prepare_noise draws one image at a time up to index 3 and keeps "
         "images 2 and 3; euler_ancestral's step noise for the 2 images",
         Settings(seed=43, batch_size=2, compat="comfyui", sampler="euler_ancestral", schedule="normal", batch_index=2)),
    Case("comfyui_conditioning_combine_euler_normal_s44", "ComfyUI ConditioningCombine of three CLIPTextEncode "
         "prompts as the positive conditioning: calc_cond_batch runs each in the UNet batch and averages their "
         "predictions before CFG; euler / normal",
         Settings(seed=44, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  combined_prompts=("a snowy forest at dawn", "oil painting, (thick brush strokes:1.3)"))),
    Case("comfyui_conditioning_set_area_euler_normal_s45", "ComfyUI ConditioningCombine of the prompt with a "
         "ConditioningSetArea (64x96 at 64,16, strength 0.8) of another on a 128x96 picture: the area runs on its crop "
         "of the latents (cut at the bottom edge) with feathered inner edges, process_conds adds a same-area copy of "
         "the negative prompt; euler / normal",
         Settings(seed=45, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", width=128, height=96,
                  conditioning={"positive": [
                      {"encoding": {"text": PROMPT}},
                      {"encoding": {"text": "a red boat"}, "strength": 0.8,
                       "area": {"x": 64, "y": 16, "width": 64, "height": 96}}]})),
    Case("comfyui_conditioning_concat_average_dpmpp_2m_karras_s46_b2", "ComfyUI ConditioningConcat of the prompt "
         "with a ConditioningAverage (to_strength 0.3) of a short prompt and a two-window one (cut to 77 tokens); "
         "the negative a ConditioningCombine of the negative prompt with a ConditioningSetArea (64x64 at 0,0, "
         "strength 1.5), which gets a same-area copy of the positive; dpmpp_2m / karras, batch 2, 96x128",
         Settings(seed=46, batch_size=2, compat="comfyui", sampler="dpmpp_2m", schedule="karras", width=96, height=128,
                  conditioning={
                      "positive": [{"encoding": {"concat": {"to": {"text": PROMPT}, "from": {"average": {
                          "to": {"text": "oil painting"}, "from": {"text": ", ".join(["watercolour wash"] * 30)},
                          "to_strength": 0.3}}}}}],
                      "negative": [
                          {"encoding": {"text": NEGATIVE}},
                          {"encoding": {"text": "text, watermark"}, "strength": 1.5,
                           "area": {"x": 0, "y": 0, "width": 64, "height": 64}}]})),
    Case("a1111_hires_latent_euler_a_automatic_s47_b2", "A1111's hires fix (sample_hr_pass) with the Latent "
         "upscaler (bilinear): scale 1.5, denoising strength 0.55, its steps (6 of an int(6 / 0.55)-step schedule), "
         "a new ImageRNG for the same seeds at the new size; Euler a, batch 2",
         Settings(seed=47, batch_size=2, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  hires={"scale": 1.5, "strength": 0.55, "steps": 0, "upscaler": "latent"})),
    Case("a1111_hires_nearest_exact_dpmpp_2m_karras_s48_nv", "A1111's hires fix with Latent (nearest-exact) to "
         "128x128, 4 hires steps at denoising strength 0.7, DPM++ 2M / Karras, NV noise",
         Settings(seed=48, batch_size=1, compat="a1111", sampler="DPM++ 2M", schedule="Karras", randn_source="nv",
                  hires={"scale": 2.0, "strength": 0.7, "steps": 4, "upscaler": "latent-nearest-exact"})),
    Case("a1111_hires_bicubic_euler_automatic_s49", "A1111's hires fix with Latent (bicubic) (torch's bicubic, "
         "A = -0.75, no antialias), scale 1.5, denoising strength 0.6; Euler",
         Settings(seed=49, batch_size=1, compat="a1111", sampler="Euler", schedule="Automatic", randn_source="cpu",
                  hires={"scale": 1.5, "strength": 0.6, "steps": 0, "upscaler": "latent-bicubic"})),
    Case("a1111_hires_nearest_euler_a_automatic_s50_nv", "A1111's hires fix with Latent (nearest) (torch's legacy "
         "nearest: floor(i * in / out)), scale 1.5, denoising strength 0.5; Euler a, NV noise",
         Settings(seed=50, batch_size=1, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="nv",
                  hires={"scale": 1.5, "strength": 0.5, "steps": 0, "upscaler": "latent-nearest"})),
    Case("comfyui_two_pass_latent_upscale_by_bicubic_euler_normal_s51", "ComfyUI's two-pass graph with "
         "LatentUpscaleBy bicubic 1.5 and a second seed",
         Settings(seed=51, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  hires={"scale": 1.5, "strength": 0.55, "steps": 4, "upscaler": "latent-bicubic", "seed": 151})),
    Case("comfyui_two_pass_latent_upscale_area_dpmpp_2m_karras_s52", "ComfyUI's two-pass graph with LatentUpscale "
         "area to 96x96 (adaptive average pooling over 1.5 latents a side)",
         Settings(seed=52, batch_size=1, compat="comfyui", sampler="dpmpp_2m", schedule="karras",
                  hires={"scale": 1.5, "strength": 0.6, "steps": 0, "upscaler": "latent-area", "seed": 52},
                  hires_node="LatentUpscale")),
    Case("a1111_img2img_dpmpp_2m_sde_karras_d06_s53", "A1111 img2img with DPM++ 2M SDE / Karras at denoising "
         "strength 0.6: its Brownian trees span the whole schedule (create_noise_sampler(x, sigmas, p)) while the sampler "
         "walks the tail",
         Settings(seed=53, batch_size=1, compat="a1111", sampler="DPM++ 2M SDE", schedule="Karras", randn_source="cpu",
                  strength=0.6)),
    Case("a1111_hires_dpmpp_2m_sde_karras_s54_nv", "A1111's hires fix (Latent, scale 1.5, denoising strength 0.5) "
         "with DPM++ 2M SDE / Karras and NV noise: the second pass's trees span its int(6 / 0.5)-step schedule",
         Settings(seed=54, batch_size=1, compat="a1111", sampler="DPM++ 2M SDE", schedule="Karras", randn_source="nv",
                  hires={"scale": 1.5, "strength": 0.5, "steps": 0, "upscaler": "latent"})),
    Case("comfyui_img2img_crop_euler_normal_d07_s55", "ComfyUI img2img of a 70x75 picture straight into VAEEncode, "
         "which cuts it to 64x72 centred (3 columns and 1 row before, the rest after); denoise 0.7, euler",
         Settings(seed=55, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", width=64, height=72,
                  strength=0.7, init_size=(70, 75), init_crop=True)),
    Case("comfyui_inpaint_vae_encode_for_inpaint_crop_euler_normal_s56", "ComfyUI VAEEncodeForInpaint of a 77x66 "
         "picture and mask: the node cuts both to 72x64 centred (the mask after its resize), grow 4; euler",
         Settings(seed=56, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", width=72, height=64,
                  strength=1.0, init_size=(77, 66), init_crop=True, masked=True, mask_grow=4)),
    Case("comfyui_uni_pc_normal_s14", "ComfyUI uni_pc (B(h) = h) / normal, the penultimate sigma discarded",
         Settings(seed=14, batch_size=1, compat="comfyui", sampler="uni_pc", schedule="normal")),
    Case("comfyui_uni_pc_bh2_karras_s15_b2", "ComfyUI uni_pc_bh2 / karras, batch 2",
         Settings(seed=15, batch_size=2, compat="comfyui", sampler="uni_pc_bh2", schedule="karras")),
    Case("a1111_inpaint_whole_original_euler_a_automatic_d075_s57", "A1111 inpainting, whole picture, masked content "
         "original: the mask blurred by OpenCV (mask_blur 4), the latent mask its bicubic resize to 8x8 rounded; "
         "Euler a at denoising strength 0.75, CFGDenoiser blending each denoised prediction with the init latents "
         "outside the latent mask, Img2Img.sample's final blend, and the init picture over the result where the "
         "doubled blurred mask is below 255 (apply_overlay)",
         Settings(seed=57, batch_size=1, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  strength=0.75, masked=True, mask_blur=4, masked_content="original", inpaint_area="whole")),
    Case("a1111_inpaint_only_masked_fill_dpmpp_2m_karras_d08_s58_b2", "A1111 inpainting, only masked (padding 8) "
         "of a 64x40 picture at 96x64: the blurred mask's box (6, 0, 64, 40) grown to (4, 0, 64, 40) by "
         "expand_crop_region (the 3:2 processing aspect), picture and mask cut out and resized to 96x64 "
         "(resize_image 2), masked content fill (masking.fill: the kept part blurred into the hole); DPM++ 2M / "
         "Karras at 0.8, batch 2 (seeds 58 and 59), NV noise; the results resized back (resize_image 1) and pasted "
         "into the 64x40 picture under the overlay",
         Settings(seed=58, batch_size=2, compat="a1111", sampler="DPM++ 2M", schedule="Karras", randn_source="nv",
                  width=96, height=64, strength=0.8, init_size=(64, 40), masked=True, mask_blur=4,
                  masked_content="fill", inpaint_area="only_masked", inpaint_padding=8)),
    Case("a1111_inpaint_whole_latent_noise_ddim_automatic_d09_s60", "A1111 inpainting, whole picture, masked "
         "content latent noise (the init latents replaced under the latent mask by create_random_tensors' draw "
         "for the seed: the start noise itself), mask_blur 2; DDIM at 0.9 (CFGDenoiserTimesteps blends x with the "
         "init latents before each model call)",
         Settings(seed=60, batch_size=1, compat="a1111", sampler="DDIM", schedule="Automatic", randn_source="cpu",
                  strength=0.9, masked=True, mask_blur=2, masked_content="latent_noise", inpaint_area="whole")),
    Case("a1111_inpaint_whole_latent_nothing_euler_automatic_d08_s61_nv", "A1111 inpainting, whole picture, masked "
         "content latent nothing (the init latents zeroed under the latent mask), no mask blur (the mask's own soft "
         "edge doubled for the overlay); Euler at 0.8, NV noise",
         Settings(seed=61, batch_size=1, compat="a1111", sampler="Euler", schedule="Automatic", randn_source="nv",
                  strength=0.8, masked=True, mask_blur=0, masked_content="latent_nothing", inpaint_area="whole")),
    Case("a1111_inpaint_model_whole_original_euler_a_automatic_d075_s62", "A1111 inpainting with the 9-channel "
         "inpainting model, whole picture, masked content original, mask_blur 4: inpainting_image_conditioning's mask "
         "(the blurred mask / 255, rounded; nearest to latent size) and the encoded picture times 1 - mask go after "
         "the latents (c_concat of the 'hybrid' model), besides the usual latent blend and overlay; Euler a at 0.75",
         Settings(seed=62, batch_size=1, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  strength=0.75, masked=True, mask_blur=4, masked_content="original", inpaint_area="whole",
                  model="tiny-sd-inpaint")),
    Case("a1111_inpaint_model_only_masked_fill_ddim_automatic_d1_s63_b2", "A1111 inpainting with the inpainting "
         "model, only masked (padding 8) of a 64x40 picture at 96x64, masked content fill, full denoising strength; "
         "DDIM (CFGDenoiserTimesteps hands the same image conditioning to cond and uncond), batch 2, NV noise",
         Settings(seed=63, batch_size=2, compat="a1111", sampler="DDIM", schedule="Automatic", randn_source="nv",
                  width=96, height=64, strength=1.0, init_size=(64, 40), masked=True, mask_blur=4,
                  masked_content="fill", inpaint_area="only_masked", inpaint_padding=8, model="tiny-sd-inpaint")),
    Case("a1111_inpaint_model_txt2img_dpmpp_2m_karras_s64", "A1111 text-to-image with the inpainting model: "
         "txt2img_image_conditioning (a mid-grey picture encoded, a mask of ones before it); DPM++ 2M / Karras",
         Settings(seed=64, batch_size=1, compat="a1111", sampler="DPM++ 2M", schedule="Karras", randn_source="cpu",
                  model="tiny-sd-inpaint")),
    Case("comfyui_inpaint_model_vae_encode_for_inpaint_euler_normal_s65", "ComfyUI VAEEncodeForInpaint (grow 6) "
         "into a KSampler with the inpainting model: concat_cond's mask (the noise mask at latent size, rounded) and "
         "the sampled latent itself (the grey-filled picture's) after the latents, besides KSamplerX0Inpaint's "
         "blend; euler / normal at full denoise",
         Settings(seed=65, batch_size=1, compat="comfyui", sampler="euler", schedule="normal", strength=1.0,
                  masked=True, mask_grow=6, model="tiny-sd-inpaint")),
    Case("comfyui_inpaint_model_latent_mask_dpmpp_2m_karras_d08_s66_b2", "ComfyUI VAEEncode -> SetLatentNoiseMask "
         "-> RepeatLatentBatch 2 with the inpainting model: the conditioning's picture is the whole, unmasked "
         "picture's latent (concat_cond's own note); dpmpp_2m / karras at denoise 0.8",
         Settings(seed=66, batch_size=2, compat="comfyui", sampler="dpmpp_2m", schedule="karras", strength=0.8,
                  masked=True, model="tiny-sd-inpaint")),
    Case("comfyui_inpaint_model_txt2img_euler_ancestral_normal_s67", "ComfyUI EmptyLatentImage into a KSampler "
         "with the inpainting model: no noise mask, so a mask of ones and blank_inpaint_image_like's four "
         "constants; euler_ancestral / normal",
         Settings(seed=67, batch_size=1, compat="comfyui", sampler="euler_ancestral", schedule="normal",
                  model="tiny-sd-inpaint")),
    Case("a1111_hires_antialiased_euler_a_automatic_s68", "A1111's hires fix with Latent (antialiased): torch's "
         "interpolate(bilinear, antialias=True) to 96x96 (the triangle filter's taps renormalised at the edges), "
         "denoising strength 0.55; Euler a",
         Settings(seed=68, batch_size=1, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  hires={"scale": 1.5, "strength": 0.55, "steps": 0, "upscaler": "latent-antialiased"})),
    Case("a1111_hires_bicubic_antialiased_dpmpp_2m_karras_s69_b2", "A1111's hires fix with Latent (bicubic "
         "antialiased): torch's interpolate(bicubic, antialias=True: Keys' cubic with A = -0.5, as Pillow's) to "
         "128x128, 4 hires steps at 0.6; DPM++ 2M / Karras, batch 2, NV noise",
         Settings(seed=69, batch_size=2, compat="a1111", sampler="DPM++ 2M", schedule="Karras", randn_source="nv",
                  hires={"scale": 2.0, "strength": 0.6, "steps": 4, "upscaler": "latent-bicubic-antialiased"})),
    Case("comfyui_two_pass_latent_upscale_by_bislerp_euler_normal_s70", "ComfyUI's two-pass graph with "
         "LatentUpscaleBy bislerp 1.5 (comfy.utils.bislerp: bilinear taps, each pair of latent vectors blended by "
         "slerp) and a second seed; euler / normal, denoise 0.55",
         Settings(seed=70, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  hires={"scale": 1.5, "strength": 0.55, "steps": 4, "upscaler": "latent-bislerp", "seed": 170})),
    Case("a1111_hires_lanczos_euler_a_automatic_s71_b2", "A1111's hires fix with the Lanczos upscaler: the "
         "first pass decoded to 8-bit pictures (truncated), each through images.resize_image(0, ..., 'Lanczos') "
         "(UpscalerLanczos: PIL's Lanczos by 1.5 to 96x96) and encoded again, then the second pass at denoising "
         "strength 0.5 from a new ImageRNG; Euler a, batch 2, CPU noise",
         Settings(seed=71, batch_size=2, compat="a1111", sampler="Euler a", schedule="Automatic", randn_source="cpu",
                  hires={"scale": 1.5, "strength": 0.5, "steps": 0, "upscaler": "lanczos"})),
    Case("comfyui_chain_dpmpp_2m_then_euler_a_karras_s72", "ComfyUI's chain of two KSamplerAdvanced nodes: "
         "dpmpp_2m / karras over steps 0-3 returning its leftover noise, then euler_ancestral / karras over steps "
         "3-end of the same 6-step schedule, add_noise disabled, CFG 5 and its own seed 172 for the step noise",
         Settings(seed=72, batch_size=1, compat="comfyui", sampler="dpmpp_2m", schedule="karras",
                  sampling_range={"start_at_step": 0, "end_at_step": 3, "add_noise": True,
                                  "return_with_leftover_noise": True},
                  stages=({"sampling_range": {"start_at_step": 3, "add_noise": False}, "seed": 172, "cfg_scale": 5.0,
                           "sampler": "euler_ancestral"},))),
    Case("comfyui_chain_euler_then_renoised_euler_normal_s73_b2", "ComfyUI's chain, batch 2: euler / normal over "
         "steps 0-4 to sigma 0, then a second KSamplerAdvanced that adds fresh noise from seed 173 and runs steps "
         "2-8 of an 8-step schedule over those latents",
         Settings(seed=73, batch_size=2, compat="comfyui", sampler="euler", schedule="normal",
                  sampling_range={"start_at_step": 0, "end_at_step": 4, "add_noise": True,
                                  "return_with_leftover_noise": False},
                  stages=({"sampling_range": {"start_at_step": 2}, "seed": 173, "steps": 8},))),
    Case("comfyui_chain_prompt_switch_euler_normal_s74", "ComfyUI's chain as a prompt switch: euler / normal over "
         "steps 0-3 of 6 with the leftover noise, then steps 3-end with another positive prompt (its own "
         "CLIPTextEncode) and the same negative, no fresh noise",
         Settings(seed=74, batch_size=1, compat="comfyui", sampler="euler", schedule="normal",
                  sampling_range={"start_at_step": 0, "end_at_step": 3, "add_noise": True,
                                  "return_with_leftover_noise": True},
                  stages=({"sampling_range": {"start_at_step": 3, "add_noise": False},
                           "prompt": "a lighthouse on a cliff at night, (oil painting:1.1)"},))),
]

SCHEMA = {
    "settings.json": "the request in Easel's vocabulary (GenerateRequest keys only): prompt, negative_prompt, seed, "
                     "steps, cfg_scale, width, height, batch_size, compat (a1111 | comfyui), sampler (the tool's "
                     "name: A1111 display name, ComfyUI sampler name), schedule (A1111 Schedule type label, ComfyUI "
                     "scheduler name), randn_source (nv | cpu; null for comfyui), subseed (null when none), "
                     "subseed_strength (0 when none), prompt_syntax (a1111 | comfyui); strength for image-to-image, "
                     "sampling_range for KSamplerAdvanced, masked_content grey and mask_grow for VAEEncodeForInpaint; "
                     "for A1111 inpainting mask_blur, masked_content (fill | original | latent_noise | "
                     "latent_nothing: inpainting_fill 0..3), inpaint_area (whole | only_masked: inpaint_full_res) "
                     "and inpaint_padding (only_masked's inpaint_full_res_padding)",
    "init.png / mask.png": "the image-to-image picture (RGB) and the inpainting mask (8-bit grey, 255 = repaint, "
                           "used as it is: no invert); A1111 inpainting gets them as PIL pictures (RGB, L)",
    "cases[].graph": "graph-only steps a request cannot say (present only when used): invert_then_scale_by, the "
                     "ImageInvert then ImageScaleBy (lanczos) factor applied to init.png before VAEEncode; pad, "
                     "ImagePadForOutpaint's [left, top, right, bottom, feathering] of init.png, its mask the one "
                     "VAEEncodeForInpaint takes",
    "latents.npy": "[B,4,h/8,w/8] float32: the sampler function's result in the model's latent space (A1111: "
                   "KDiffusionSampler.sample's return; ComfyUI: KSAMPLER.sample's return, i.e. after "
                   "inverse_noise_scaling and before process_latent_out). The decoder input is latents / 0.18215 "
                   "(A1111: LDM decode_first_stage computes 1. / scale_factor * z; ComfyUI: "
                   "latent_formats.SD15.process_out, latent / scale_factor, whose result is the KSampler node's "
                   "LATENT); A1111 inpainting: Img2Img.sample's samples * nmask + init_latent * mask",
    "noise.npy": "[B,4,h/8,w/8] float32: the initial noise before any sigma scaling (A1111: ImageRNG.next() the first "
                 "time; ComfyUI: comfy.sample.prepare_noise)",
    "sigmas.npy": "[steps + 1] float32: the sigmas handed to the sampler function",
    "image_<i>.png": "RGB 8-bit, h x w: the tool's uint8 image of batch item i (no metadata); A1111 inpainting: "
                     "after apply_overlay, at the init picture's size (only_masked: init.png's, not width x height)",
    "cases[].tool.inpainting": "A1111 inpainting: inpainting_fill, inpaint_full_res, padding, mask_blur_x / _y, "
                               "resize_mode, paste_to (only masked: x, y, width, height), overlay_size, latent_mask "
                               "(nmask rows, 1 = repainted), where the CFG denoiser blends",
    "cases[].tool": "what the tool did for this case (seeds, initial x scale, model calls, noise draws, UNet batch "
                    "layout, latents as the tool hands them to the decoder)",
}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def load_inpainting_unet():
    """The tiny inpainting model's 9-channel UNet (diffusers, float32, eval); its VAE and text encoder are the tiny
    model's."""
    import torch
    from diffusers import UNet2DConditionModel

    from .reference import default_torch_model

    model_dir = default_torch_model(log=lambda *_: None, name="tiny-sd-inpaint")
    return UNet2DConditionModel.from_pretrained(str(model_dir / "unet"), torch_dtype=torch.float32).eval()


def load_networks():
    """The tiny model's UNet and VAE (diffusers, float32, eval) and its VAE scaling factor."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from . import quiet_diffusers
    from .reference import default_torch_model

    quiet_diffusers()
    model_dir = default_torch_model(log=lambda *_: None)
    unet = UNet2DConditionModel.from_pretrained(str(model_dir / "unet"), torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(str(model_dir / "vae"), torch_dtype=torch.float32).eval()
    return unet, vae, float(vae.config.scaling_factor)


class UNetCalls:
    """Counts UNet evaluations and records the layout of the first batch (which rows are cond / uncond)."""

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond
        self.calls, self.first_batch, self.timesteps = 0, None, []

    def note(self, context, t):
        import torch

        self.calls += 1
        self.timesteps.append(float(t.reshape(-1)[0]))
        if self.first_batch is None:
            rows = []
            for row in context:
                if torch.equal(row, self.cond):
                    rows.append("cond")
                elif torch.equal(row, self.uncond):
                    rows.append("uncond")
                else:
                    rows.append("other")
            self.first_batch = rows


# --------------------------------------------------------------------------------------------------
# A1111
# --------------------------------------------------------------------------------------------------

class A1111:
    """A1111's txt2img sampling path from a checkout: ref_prompts' conditioning set-up, then rng,
    sd_schedulers, sd_samplers_kdiffusion / sd_samplers_cfg_denoiser / sd_samplers_common and
    script_callbacks, around a LatentDiffusion stand-in that runs the tiny diffusers UNet and VAE."""

    def __init__(self, root: Path, text_encoder, tokenizer, unet, vae, betas):
        import torch
        import yaml
        import torchsde._brownian.brownian_interval as bi

        self.root = Path(root)
        upstream.check_files(self.root, A1111_FILES, "--a1111")
        cpu = torch.device("cpu")
        # modules.shared / modules.devices stand-ins, prompt_parser, sd_hijack_clip, textual_inversion
        self.prompts = ref_prompts.A1111(self.root, text_encoder, tokenizer)
        self.opt_defaults = upstream.option_defaults(self.root / "modules/shared_options.py", A1111_OPT_KEYS)
        self.opts = self.prompts.opts
        for k, v in self.opt_defaults.items():
            setattr(self.opts, k, v)
        self.config = yaml.safe_load((self.root / "configs/v1-inference.yaml").read_text(encoding="utf-8"))
        params = self.config["model"]["params"]
        inpainting_config = yaml.safe_load((self.root / "configs/v1-inpainting-inference.yaml").read_text(encoding="utf-8"))
        # the LatentDiffusion conditioning key per model: "crossattn" (v1-inference), "hybrid" (v1-inpainting-inference)
        self.conditioning_keys = {"tiny-sd": params["conditioning_key"],
                                  "tiny-sd-inpaint": inpainting_config["model"]["params"]["conditioning_key"]}
        self.unets = {"tiny-sd": unet}  # main() adds the inpainting model's
        self.scale_factor = float(params["scale_factor"])
        self.recorder = None

        shared = sys.modules["modules.shared"]
        shared.device = cpu
        shared.state = types.SimpleNamespace(sampling_step=0, sampling_steps=0, interrupted=False, skipped=False,
                                             current_latent=None, job_count=0)
        shared.total_tqdm = types.SimpleNamespace(update=lambda: None, clear=lambda: None)
        shared.parallel_processing_allowed = True  # modules/shared.py default
        devices = sys.modules["modules.devices"]
        # webui in float32 (--no-half, as on a CPU)
        devices.dtype = devices.dtype_vae = devices.dtype_unet = devices.dtype_inference = torch.float32
        devices.unet_needs_upcast = False
        devices.without_autocast = lambda disable=False: contextlib.nullcontext()
        devices.test_for_nans = lambda x, where: None
        for name in ("sd_vae_approx", "sd_vae_taesd", "timer", "util", "lowvram"):
            upstream.sink_module(f"modules.{name}")
        upstream.module("modules.extensions", extensions=[])  # no extensions installed
        # script_callbacks imports these for UI/API callback types only
        upstream.stand_in_missing("fastapi", FastAPI=object)
        upstream.stand_in_missing("gradio", Blocks=object)

        outer = self
        alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas.numpy(), axis=0), dtype=torch.float32)
        prompts_model = self.prompts.model

        class LatentDiffusionStandIn:
            """What A1111 reads from shared.sd_model for an SD 1.5 checkpoint (configs/v1-inference.yaml):
            LDM's LatentDiffusion with the tiny diffusers UNet / VAE in place of UNetModel / AutoencoderKL."""
            parameterization = params.get("parameterization", "eps")
            cond_stage_key = params["cond_stage_key"]
            is_sdxl = False
            is_sdxl_inpaint = False
            sd_checkpoint_info = None
            device = cpu
            dtype = torch.float32  # devices.dtype (inpainting_image_conditioning casts to it)

            def __init__(self):
                # LatentDiffusion.register_schedule: np.cumprod(1 - betas) in float64, stored float32
                self.alphas_cumprod = alphas_cumprod
                self.scale_factor = outer.scale_factor
                self.model = types.SimpleNamespace(conditioning_key=params["conditioning_key"], diffusion_model=unet)
                self.first_stage_model = vae
                self.cond_stage_model = prompts_model.cond_stage_model

            def get_learned_conditioning(self, texts):
                return prompts_model.get_learned_conditioning(texts)

            def apply_model(self, x_noisy, t, cond):
                """sd_hijack_unet.apply_model (casts to dtype_unet = float32) -> LatentDiffusion.apply_model ->
                DiffusionWrapper.forward ('crossattn': context = torch.cat(c_crossattn, 1), c_concat unused;
                'hybrid': the same context, the UNet input torch.cat([x] + c_concat, dim=1))."""
                key = self.model.conditioning_key
                assert key in ("crossattn", "hybrid")
                x_noisy = x_noisy.to(devices.dtype_unet)
                t = t.to(devices.dtype_unet)
                context = torch.cat([c.to(devices.dtype_unet) for c in cond["c_crossattn"]], 1)
                if key == "hybrid":
                    x_noisy = torch.cat([x_noisy] + [c.to(devices.dtype_unet) for c in cond["c_concat"]], dim=1)
                if outer.recorder is not None:
                    outer.recorder.note(context, t)
                with torch.no_grad():
                    return self.model.diffusion_model(x_noisy, t, encoder_hidden_states=context).sample

            def encode_first_stage(self, x):
                """LDM LatentDiffusion.encode_first_stage: first_stage_model.encode(x), the posterior."""
                with torch.no_grad():
                    return self.first_stage_model.encode(x).latent_dist

            def get_first_stage_encoding(self, posterior):
                """LDM LatentDiffusion.get_first_stage_encoding: scale_factor * posterior.sample(). The sample is
                mean + std * torch.randn from torch's GLOBAL generator, whose state depends on everything the
                webui process drew before (A1111 never seeds it for this), so no run of A1111 can be repeated
                bit for bit; the recording takes the posterior's mean (its mode) instead, as Easel does."""
                return self.scale_factor * posterior.mode()

            def decode_first_stage(self, z):
                """LDM LatentDiffusion.decode_first_stage: z = 1. / self.scale_factor * z; first_stage_model.decode."""
                z = 1. / self.scale_factor * z
                with torch.no_grad():
                    return self.first_stage_model.decode(z).sample

        self.sd_model = LatentDiffusionStandIn()
        shared.sd_model = self.sd_model

        self.kd = upstream.kdiffusion_package()
        self.script_callbacks = importlib.import_module("modules.script_callbacks")
        self.rng = importlib.import_module("modules.rng")
        original_randn = bi._randn
        self.common = importlib.import_module("modules.sd_samplers_common")  # replaces torchsde's _randn
        # A1111's replacement (its randn_local: Philox for NV, torch CPU for CPU) is put back only
        # while A1111 runs (see run); ComfyUI shares the process and uses torchsde's own.
        self.torchsde_randn = bi._randn
        assert self.torchsde_randn is not original_randn
        bi._randn = original_randn
        self.schedulers = importlib.import_module("modules.sd_schedulers")
        self.kdiffusion = importlib.import_module("modules.sd_samplers_kdiffusion")
        self.prompt_parser = self.prompts.prompt_parser
        self.timesteps = importlib.import_module("modules.sd_samplers_timesteps")
        self.lcm = importlib.import_module("modules.sd_samplers_lcm")
        self.samplers_map = {**self.kdiffusion.k_diffusion_samplers_map,
                             **{d.name: d for d in [*self.timesteps.samplers_data_timesteps,
                                                    *self.lcm.samplers_data_lcm]}}
        self.inpainting = self._inpainting_code(shared, devices)

    def _inpainting_code(self, shared, devices) -> dict:
        """A1111's inpainting code from the checkout: ``masking.py`` imported as it is; ``sd_samplers.py`` run as a
        module of its own (``modules.sd_samplers`` is an attribute sink here); from ``images.py`` (``LANCZOS``,
        ``resize_image``, ``flatten``) and ``processing.py`` (the ``StableDiffusionProcessing`` and
        ``StableDiffusionProcessingImg2Img`` dataclasses, ``create_binary_mask``, ``create_random_tensors``,
        ``apply_overlay``, ``uncrop``) the definitions themselves, extracted and run over the names their files
        import (``upstream.defs_from_source``): the real numpy / torch / PIL / cv2 / masking / rng /
        sd_samplers_common, the float32 ``modules.shared`` / ``devices`` stand-ins. devices.torch_gc only frees
        CUDA memory and devices.cond_cast_float is ``input.float() if unet_needs_upcast else input`` (False
        here): both stand in as the identity."""
        import dataclasses
        import hashlib
        import logging
        import typing

        import cv2
        import torch
        from PIL import Image, ImageOps

        devices.torch_gc = lambda: None
        devices.cond_cast_float = lambda input: input
        masking = importlib.import_module("modules.masking")
        sd_samplers = upstream.module_from_file("a1111_sd_samplers", self.root / "modules/sd_samplers.py")
        found = upstream.defs_from_source(self.root / "modules/images.py", ["LANCZOS", "resize_image", "flatten"],
                                          {"Image": Image, "opts": self.opts, "shared": shared}, "a1111_images")
        images = types.SimpleNamespace(resize_image=found["resize_image"], flatten=found["flatten"])
        self.images = images
        # modules/upscaler.py's Upscaler / UpscalerLanczos, as shared.sd_upscalers lists them for resize_image (the
        # hires fix's "Lanczos"); their __init__ reads the tile options, the device and --no-half
        import os
        from abc import abstractmethod

        import PIL
        settings = types.SimpleNamespace(opts=types.SimpleNamespace(ESRGAN_tile=192, ESRGAN_tile_overlap=8),
                                         device=shared.device, cmd_opts=types.SimpleNamespace(no_half=True),
                                         models_path="models", state=shared.state)
        upscalers = upstream.defs_from_source(
            self.root / "modules/upscaler.py", ["LANCZOS", "NEAREST", "Upscaler", "UpscalerData", "UpscalerLanczos"],
            {"os": os, "abstractmethod": abstractmethod, "PIL": PIL, "Image": Image,
             "modules": types.SimpleNamespace(shared=settings), "modelloader": None, "shared": settings},
            "a1111_upscaler")
        shared.sd_upscalers = upscalers["UpscalerLanczos"]().scalers

        class LatentDepth2ImageDiffusion:
            """ldm's depth-to-image model class (img2img_image_conditioning's isinstance test): not the tiny model."""

        namespace = {
            "dataclass": dataclasses.dataclass, "field": dataclasses.field, "Any": typing.Any, "sys": sys,
            "logging": logging, "hashlib": hashlib, "np": np, "torch": torch, "Image": Image, "ImageOps": ImageOps,
            "cv2": cv2, "masking": masking, "images": images, "sd_samplers": sd_samplers, "rng": self.rng,
            "sd_samplers_common": self.common, "images_tensor_to_samples": self.common.images_tensor_to_samples,
            "decode_first_stage": self.common.decode_first_stage,
            "approximation_indexes": self.common.approximation_indexes, "opts": self.opts, "shared": shared,
            "state": shared.state, "devices": devices, "model_hijack": types.SimpleNamespace(comments=[]),
            "LatentDepth2ImageDiffusion": LatentDepth2ImageDiffusion,
        }
        return upstream.defs_from_source(
            self.root / "modules/processing.py",
            ["opt_C", "opt_f", "txt2img_image_conditioning", "uncrop", "apply_overlay", "create_binary_mask",
             "StableDiffusionProcessing",
             "create_random_tensors", "StableDiffusionProcessingImg2Img"], namespace, "a1111_processing")

    def inpainting_processing(self, s: Settings, seeds, subseeds, c, uc):
        """A StableDiffusionProcessingImg2Img as the webui's inpaint-upload tab / API makes it (modules/img2img.py:
        mask, mask_blur, inpainting_fill, resize_mode 0 "Just resize", inpaint_full_res, its padding, no invert),
        then process_images_inner's steps up to sampling (processing.py): fill_fields_from_opts, all_seeds, p.init
        (the mask, crop, overlay, fill, VAE encode, latent mask and latent fill; the sampler from
        sd_samplers.create_sampler), p.seeds / p.subseeds, p.rng = rng.ImageRNG((4, h / 8, w / 8), ...), p.c / p.uc.
        """
        from PIL import Image

        b, w, h = s.batch_size, s.width, s.height
        size = s.init_size or (w, h)
        fill = {"fill": 0, "original": 1, "latent_noise": 2, "latent_nothing": 3}[s.masked_content]
        p = self.inpainting["StableDiffusionProcessingImg2Img"](
            prompt=s.prompt, negative_prompt=s.negative_prompt, seed=s.seed, subseed=-1 if s.subseed is None else s.subseed,
            subseed_strength=s.subseed_strength, sampler_name=s.sampler, scheduler=s.schedule, batch_size=b, n_iter=1,
            steps=s.steps, cfg_scale=s.cfg_scale, width=w, height=h, init_images=[Image.fromarray(init_image(*size))],
            mask=Image.fromarray(mask_image(*size)), mask_blur=s.mask_blur, inpainting_fill=fill, resize_mode=0,
            denoising_strength=s.strength, inpaint_full_res=s.inpaint_area == "only_masked",
            inpaint_full_res_padding=s.inpaint_padding or 0, inpainting_mask_invert=0, do_not_save_samples=True,
            do_not_save_grid=True)
        p.fill_fields_from_opts()
        p.all_prompts, p.all_negative_prompts = [s.prompt] * b, [s.negative_prompt] * b
        p.all_seeds, p.all_subseeds = list(seeds), list(subseeds or [])
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        p.iteration, p.prompts, p.negative_prompts = 0, p.all_prompts, p.all_negative_prompts
        p.seeds, p.subseeds = list(seeds), subseeds
        p.rng = self.rng.ImageRNG((4, h // 8, w // 8), p.seeds, subseeds=p.subseeds,
                                  subseed_strength=p.subseed_strength, seed_resize_from_h=p.seed_resize_from_h,
                                  seed_resize_from_w=p.seed_resize_from_w)
        p.c, p.uc = c, uc
        return p

    def inpainting_overlay(self, p, images: list) -> list:
        """process_images_inner's per-image lines after the uint8 conversion: Image.fromarray, the overlay image
        (p.overlay_images[i] while opts.overlay_inpaint), no colour correction (opts.img2img_color_correction off),
        apply_overlay(image, p.paste_to, overlay_image) (uncrop for only masked)."""
        from PIL import Image

        out = []
        for i, x_sample in enumerate(images):
            image = Image.fromarray(x_sample)
            if not self.opts.overlay_inpaint:
                overlay_image = None
            elif getattr(p, "overlay_images", None) is not None and i < len(p.overlay_images):
                overlay_image = p.overlay_images[i]
            else:
                overlay_image = None
            assert p.color_corrections is None
            image, _ = self.inpainting["apply_overlay"](image, p.paste_to, overlay_image)
            out.append(np.asarray(image, dtype=np.uint8).copy())
        return out

    def inpainting_record(self, p, sampler) -> dict:
        """What A1111's inpainting did for the case (the tool record's "inpainting")."""
        nmask = p.nmask[0].numpy()
        assert set(np.unique(nmask)) <= {0.0, 1.0}
        return {  # (what ran and which lines were followed: the index's "substitutions" and "findings")
            "inpainting_fill": p.inpainting_fill, "inpaint_full_res": bool(p.inpaint_full_res),
            "inpaint_full_res_padding": p.inpaint_full_res_padding, "mask_blur_x": p.mask_blur_x,
            "mask_blur_y": p.mask_blur_y, "resize_mode": p.resize_mode,
            "paste_to": None if p.paste_to is None else [int(v) for v in p.paste_to],
            "overlay_size": list(p.overlay_images[0].size),
            "latent_mask": ["".join(str(int(v)) for v in row) for row in nmask],  # nmask rows: 1 = repainted
            "cfg_denoiser_blend": "before the model call, on x (CFGDenoiserTimesteps.mask_before_denoising)"
            if sampler.model_wrap_cfg.mask_before_denoising else "after CFG, on the denoised prediction",
        }

    def source(self, log) -> dict:
        src = upstream.pinned_source(self.root, "a1111", {**A1111_FILES, **A1111_MORE_SAMPLER_FILES}, log, RECORDER)
        src["opts"] = {"defaults": self.opt_defaults, "prompts": dict(ref_prompts.A1111_OPTS),
                       "per_case": {"randn_source": "settings.randn_source upper-cased (NV | CPU)"}}
        return src

    def run(self, s: Settings) -> dict:
        """One case, with A1111's torchsde ``_randn`` replacement in place (its SDE samplers'
        Brownian trees draw from ``randn_local``, i.e. the chosen noise source)."""
        import torchsde._brownian.brownian_interval as bi

        # the case's model: its UNet as the LatentDiffusion's diffusion_model, its conditioning key
        self.sd_model.model.conditioning_key = self.conditioning_keys[s.model]
        self.sd_model.model.diffusion_model = self.unets[s.model]
        with upstream.patched(bi, "_randn", self.torchsde_randn):
            return self._run(s)

    def _run(self, s: Settings) -> dict:
        import torch

        pp = self.prompt_parser
        self.opts.randn_source = s.randn_source.upper()
        data = self.samplers_map[s.sampler]
        b, w, h = s.batch_size, s.width, s.height

        # process_images_inner: all_seeds / all_subseeds, then one batch (n_iter 1)
        seeds = [int(s.seed) + (i if s.subseed_strength == 0 else 0) for i in range(b)]
        subseeds = None if s.subseed is None else [int(s.subseed) + i for i in range(b)]
        rng = self.rng.ImageRNG((4, h // 8, w // 8), seeds, subseeds=subseeds, subseed_strength=s.subseed_strength,
                                seed_resize_from_h=-1, seed_resize_from_w=-1)

        # setup_conds: total_steps = sampler_config.total_steps(steps); the prompt list is batch_size copies
        total_steps = data.total_steps(s.steps)
        prompts = pp.SdConditioning([s.prompt] * b, width=w, height=h)
        negatives = pp.SdConditioning([s.negative_prompt] * b, width=w, height=h, is_negative_prompt=True)
        uc = pp.get_learned_conditioning(self.sd_model, negatives, total_steps, None, self.opts.use_old_scheduling)
        c = pp.get_multicond_learned_conditioning(self.sd_model, prompts, total_steps, None,
                                                  self.opts.use_old_scheduling)
        cond_row, uncond_row = c.batch[0][0].schedules[0].cond, uc[0][0].cond

        o = self.opts
        p = types.SimpleNamespace(  # the StableDiffusionProcessingTxt2Img fields the sampler reads
            steps=s.steps, scheduler=s.schedule, hr_scheduler=None, is_hr_pass=False, enable_hr=False,
            sampler_noise_scheduler_override=None, sampler_name=s.sampler, extra_generation_params={}, eta=None,
            s_min_uncond=o.s_min_uncond, s_churn=o.s_churn, s_tmin=o.s_tmin, s_tmax=o.s_tmax or float("inf"),
            s_noise=o.s_noise, cfg_scale=s.cfg_scale, batch_size=b, iteration=0, width=w, height=h,
            seed=s.seed, subseed=s.subseed, subseed_strength=s.subseed_strength, all_seeds=list(seeds),
            all_subseeds=list(subseeds or []), seeds=list(seeds), subseeds=subseeds, rng=rng,
            refiner_switch_at=None, refiner_checkpoint_info=None, scripts=None, c=c, uc=uc)

        # StableDiffusionProcessingTxt2Img.sample / StableDiffusionProcessingImg2Img.init + sample
        inpainting = None
        if s.masked:  # A1111's own StableDiffusionProcessingImg2Img, through p.init (see inpainting_processing)
            inpainting = p = self.inpainting_processing(s, seeds, subseeds, c, uc)
            sampler, init_latent = p.sampler, p.init_latent
        else:
            sampler = data.constructor(self.sd_model)  # sd_samplers.create_sampler
            sampler.config = data
            init_latent = None
        if s.strength is not None and inpainting is None:
            # Img2Img.init: the image (already width x height: resize_image is the identity) / 255 in float32,
            # CHW, repeated over the batch; images_tensor_to_samples (Full: x * 2 - 1, each image encoded
            # alone, get_first_stage_encoding); the image conditioning of a crossattn model is zeros [B,5,1,1]
            p.denoising_strength = s.strength
            image = np.moveaxis(init_image(w, h).astype(np.float32) / 255.0, 2, 0)
            image = torch.from_numpy(np.expand_dims(image, axis=0).repeat(b, axis=0))
            init_latent = self.common.images_tensor_to_samples(image, 0, self.sd_model)
        draws = {"n": 0}
        if inpainting is None:
            x = p.rng.next()
            noise = x.clone()
            if init_latent is None:  # Txt2Img.sample: self.txt2img_image_conditioning(x), processing.py's own
                image_conditioning = self.inpainting["txt2img_image_conditioning"](self.sd_model, x, w, h)
            else:  # img2img_image_conditioning of a crossattn model (no img2img case runs the inpainting model)
                assert self.sd_model.model.conditioning_key == "crossattn"
                image_conditioning = x.new_zeros(x.shape[0], 5, 1, 1, dtype=x.dtype, device=x.device)
        rng_next = p.rng.next

        def counting_next():
            draws["n"] += 1
            return rng_next()

        p.rng.next = counting_next
        if inpainting is not None:  # Img2Img.sample draws x = self.rng.next() itself: the start noise
            first_draw = []

            def first_next():
                p.rng.next = counting_next
                x = rng_next()
                first_draw.append(x.clone())
                return x

            p.rng.next = first_next
        seen = {}
        func = sampler.func
        # k-diffusion samplers get a sigma schedule; A1111's timestep samplers (CompVisSampler) timesteps
        timestep_sampler = hasattr(sampler, "get_timesteps")
        schedule_attr = "get_timesteps" if timestep_sampler else "get_sigmas"
        get_schedule = getattr(sampler, schedule_attr)

        def recording_get_schedule(p_, steps_):
            out = get_schedule(p_, steps_)
            seen["schedule"] = out.detach().clone()
            return out

        setattr(sampler, schedule_attr, recording_get_schedule)

        @functools.wraps(func)
        def recording_func(model, x, **kwargs):
            seen["x0"] = x.detach().clone()
            # DPM fast / adaptive take (sigma_min, sigma_max, n) instead: then the schedule get_sigmas made,
            # which only scales the initial noise.
            seen["sigmas"] = kwargs["sigmas"].detach().clone() if "sigmas" in kwargs else seen["schedule"]
            if "timesteps" in kwargs:  # the timesteps walked (image-to-image: the first t_enc of them)
                seen["sigmas"] = kwargs["timesteps"].detach().clone()
            seen["kwargs"] = sorted(k for k in kwargs if k not in ("extra_args", "callback", "disable"))
            seen["range"] = {k: float(kwargs[k]) for k in ("sigma_min", "sigma_max", "n") if k in kwargs}
            return func(model, x, **kwargs)

        sampler.func = recording_func
        self.recorder = UNetCalls(cond_row, uncond_row)
        try:  # (A1111 passes disable=False to the samplers' tqdm bars)
            with contextlib.redirect_stderr(io.StringIO()):
                if inpainting is not None:
                    # Img2Img.sample: sample_img2img(p, p.init_latent, x, ...) with the CFG denoiser's mask / nmask
                    # from p (Sampler.initialize), then samples * nmask + init_latent * mask
                    samples = p.sample(conditioning=c, unconditional_conditioning=uc, seeds=p.seeds,
                                       subseeds=p.subseeds, subseed_strength=p.subseed_strength, prompts=p.prompts)
                    noise = first_draw[0]
                elif init_latent is None:
                    samples = sampler.sample(p, x, c, uc, image_conditioning=image_conditioning)
                else:
                    samples = sampler.sample_img2img(p, init_latent, x, c, uc, image_conditioning=image_conditioning)
        finally:
            recorder, self.recorder = self.recorder, None
        first_pass = None
        if s.hires is not None:
            first_pass = {"unet_calls": recorder.calls, "step_noise_draws": draws["n"]}
            samples, x, seen, recorder, sampler = self.hr_pass(s, data, p, samples, seeds, subseeds, draws)

        # process_images_inner: decode_latent_batch (one image at a time), stack, clamp, 255 *, astype(uint8)
        decoded = [self.common.decode_first_stage(self.sd_model, samples[i:i + 1])[0] for i in range(samples.shape[0])]
        x_samples = torch.stack(decoded).float()
        x_samples = torch.clamp((x_samples + 1.0) / 2.0, min=0.0, max=1.0)
        images = []
        for x_sample in x_samples:
            x_sample = 255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)
            images.append(x_sample.astype(np.uint8))
        if inpainting is not None:
            images = self.inpainting_overlay(p, images)

        sigmas = seen["sigmas"]
        if timestep_sampler:
            # CompVisSampler: txt2img starts from the noise itself; img2img from init_latent * sqrt(ac) +
            # noise * sqrt(1 - ac), ac = alphas_cumprod at the timestep after the t_enc walked
            all_timesteps = seen["schedule"]
            if init_latent is None:
                scale = 1.0
                assert torch.equal(seen["x0"], noise), "initial x is not the noise"
            else:
                ac = self.sd_model.alphas_cumprod[all_timesteps[len(sigmas)]]
                scale = None
                want = init_latent * torch.sqrt(ac) + noise * torch.sqrt(1 - ac)
                assert torch.equal(seen["x0"], want), "initial x is not latent * sqrt(ac) + noise * sqrt(1 - ac)"
        elif s.hires is not None:
            noise = x
            scale = float(sigmas[0])
            assert torch.equal(seen["x0"], seen["hr_latent"] + noise * sigmas[0]), "hires x is not latent + noise * sigma0"
        elif init_latent is None:
            scale = kd._x0_scale(seen["x0"], noise)
            assert scale == float(sigmas[0]), "initial x is not noise * sigmas[0]"
        else:
            scale = float(sigmas[0])
            assert torch.equal(seen["x0"], init_latent + noise * sigmas[0]), "initial x is not latent + noise * sigma0"
        tool = {
            "sampler_function": data.constructor.__defaults__[0] if isinstance(data.constructor.__defaults__[0], str)
            else data.constructor.__defaults__[0].__name__,
            "sampler_options": kd._json_value(dict(data.options)),
            "schedule_resolves_to": "CompVisSampler.get_timesteps: clip(range(0, 1000, 1000 // steps) + 1, 0, 999)"
            if timestep_sampler else (self.schedulers.schedulers_map[data.options["scheduler"]].label
                                     if s.schedule == "Automatic" and data.options.get("scheduler")
                                     else "k-diffusion DiscreteSchedule.get_sigmas (model_wrap.get_sigmas)"
                                     if s.schedule == "Automatic" else s.schedule),
            "opts_randn_source": self.opts.randn_source,
            "seeds": seeds, "subseeds": subseeds, "total_steps": total_steps,
            "x0": ("noise (CompVisSampler.sample)" if timestep_sampler and init_latent is None else
                   "init_latent * sqrt(ac) + noise * sqrt(1 - ac), ac = alphas_cumprod[timesteps[t_enc]] "
                   "(CompVisSampler.sample_img2img; sigmas.npy holds the t_enc timesteps walked)"
                   if timestep_sampler else
                   "noise * sigmas[0] (sgm_noise_multiplier False)" if init_latent is None else
                   "init_latent + noise * sigma_sched[0] (sample_img2img; sigma_sched = sigmas[steps - t_enc - 1:], "
                   "t_enc = int(min(denoising_strength, 0.999) * steps)); the init latent is scale_factor times the "
                   "posterior's mean (see get_first_stage_encoding)") + "; checked bit-equal", "x0_scale": scale,
            "sampler_kwargs": seen["kwargs"],
            "sampler_range": seen["range"] or None,
            "step_noise_draws": draws["n"],
            "unet_calls": recorder.calls,
            "unet_batch": recorder.first_batch,
            "unet_timesteps": recorder.timesteps,
            "decoder_input": "latents.npy * (1. / 0.18215), one image per decode",
            "extra_generation_params": kd._json_value(p.extra_generation_params),
        }
        out = {"samples": samples, "noise": noise, "sigmas": sigmas, "images": images, "tool": tool}
        if inpainting is not None:
            tool["inpainting"] = self.inpainting_record(p, sampler)
            out["size"] = tuple(images[0].shape[:2])
        if first_pass is not None:
            tool["first_pass"] = first_pass
            tool["hires"] = seen["hires"]
            out["size"] = tuple(images[0].shape[:2])
        return out

    def hr_pass(self, s: Settings, data, p, samples, seeds, subseeds, draws):
        """StableDiffusionProcessingTxt2Img.sample_hr_pass for a latent upscaler, as processing.py runs it: the
        samples through torch's interpolate with shared.latent_upscale_modes' mode for the upscaler, a new ImageRNG
        for the same seeds at the new shape (its first draw the noise), the hires conds for total_steps of the hires
        steps, and sample_img2img(steps=hires steps) with is_hr_pass set (hr_scheduler = the scheduler)."""
        import ast

        import torch

        h = s.hires
        tw, th = int(s.width * h["scale"]), int(s.height * h["scale"])  # hr_upscale_to_x / _y (no hr_resize)
        if h["upscaler"] == "lanczos":
            # The picture branch: decode_latent_batch (one image at a time), clamp, 255 *, astype(uint8), each
            # picture through images.resize_image(0, image, target_width, target_height, upscaler_name="Lanczos")
            # (UpscalerLanczos), / 255, then images_tensor_to_samples (each image encoded alone, the posterior's
            # mean); the image conditioning of a crossattn model stays zeros.
            from PIL import Image
            decoded = torch.stack([self.common.decode_first_stage(self.sd_model, samples[i:i + 1])[0]
                                   for i in range(samples.shape[0])]).float()
            lowres = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)
            batch_images = []
            for x_sample in lowres:
                x_sample = (255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
                image = self.images.resize_image(0, Image.fromarray(x_sample), tw, th, upscaler_name="Lanczos")
                batch_images.append(np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0))
            samples = self.common.images_tensor_to_samples(torch.from_numpy(np.array(batch_images)), 0, self.sd_model)
            mode = {"upscaler": "Lanczos", "resize_image": f"resize_image(0, picture, {tw}, {th}, 'Lanczos')"}
        else:
            text = (self.root / "modules/shared.py").read_text(encoding="utf-8")
            table = next(n for n in ast.parse(text).body if isinstance(n, ast.Assign)
                         and getattr(n.targets[0], "id", None) == "latent_upscale_modes")
            modes = ast.literal_eval(table.value)
            mode = modes[{"latent": "Latent", "latent-nearest-exact": "Latent (nearest-exact)",
                          "latent-bicubic": "Latent (bicubic)", "latent-nearest": "Latent (nearest)",
                          "latent-antialiased": "Latent (antialiased)",
                          "latent-bicubic-antialiased": "Latent (bicubic antialiased)"}[h["upscaler"]]]
            samples = torch.nn.functional.interpolate(samples, size=(th // 8, tw // 8), mode=mode["mode"],
                                                      antialias=mode["antialias"])
        rng = self.rng.ImageRNG(samples.shape[1:], seeds, subseeds=subseeds, subseed_strength=s.subseed_strength,
                                seed_resize_from_h=-1, seed_resize_from_w=-1)
        noise = rng.next()
        hr_steps = h["steps"] or s.steps
        total_steps = data.total_steps(hr_steps)
        pp = self.prompt_parser
        prompts = pp.SdConditioning([s.prompt] * s.batch_size, width=tw, height=th)
        negatives = pp.SdConditioning([s.negative_prompt] * s.batch_size, width=tw, height=th, is_negative_prompt=True)
        uc = pp.get_learned_conditioning(self.sd_model, negatives, total_steps, None, self.opts.use_old_scheduling)
        c = pp.get_multicond_learned_conditioning(self.sd_model, prompts, total_steps, None,
                                                  self.opts.use_old_scheduling)
        p.is_hr_pass, p.hr_scheduler, p.denoising_strength, p.rng, p.c, p.uc = True, p.scheduler, h["strength"], rng, c, uc
        p.width, p.height = tw, th
        rng_next = rng.next

        def counting_next():
            draws["n"] += 1
            return rng_next()

        rng.next = counting_next
        sampler = data.constructor(self.sd_model)
        sampler.config = data
        seen = {"hr_latent": samples.clone()}
        get_sigmas, func = sampler.get_sigmas, sampler.func

        def recording_get_sigmas(p_, steps_):
            out = get_sigmas(p_, steps_)
            seen["schedule"] = out.detach().clone()
            return out

        @functools.wraps(func)
        def recording_func(model, x, **kwargs):
            seen["x0"] = x.detach().clone()
            seen["sigmas"] = kwargs["sigmas"].detach().clone() if "sigmas" in kwargs else seen["schedule"]
            seen["kwargs"] = sorted(k for k in kwargs if k not in ("extra_args", "callback", "disable"))
            seen["range"] = {k: float(kwargs[k]) for k in ("sigma_min", "sigma_max", "n") if k in kwargs}
            return func(model, x, **kwargs)

        sampler.get_sigmas, sampler.func = recording_get_sigmas, recording_func
        self.recorder = UNetCalls(c.batch[0][0].schedules[0].cond, uc[0][0].cond)
        assert self.sd_model.model.conditioning_key == "crossattn"  # (an inpainting model fails here in A1111)
        image_conditioning = samples.new_zeros(samples.shape[0], 5, 1, 1)  # txt2img_image_conditioning
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                out = sampler.sample_img2img(p, samples, noise, c, uc, steps=hr_steps,
                                             image_conditioning=image_conditioning)
        finally:
            recorder, self.recorder = self.recorder, None
        seen["hires"] = {"interpolate": dict(mode), "latent_size": list(samples.shape[-2:]),
                         "schedule_steps": len(seen["schedule"]) - 1}
        return out, noise, seen, recorder, sampler


# --------------------------------------------------------------------------------------------------
# ComfyUI
# --------------------------------------------------------------------------------------------------

FREE_MEMORY = 1 << 40  # model_management.get_free_memory: plenty, so calc_cond_batch and VAE.decode batch it all


class ComfyUI:
    """ComfyUI's KSampler path from a checkout: ref_prompts' sd1_clip conditioning, comfy.sample, comfy.samplers
    (KSampler, CFGGuider, KSAMPLER, calc_cond_batch, cfg_function), comfy.k_diffusion, model_sampling, conds and
    latent_formats, around BaseModel / ModelPatcher stand-ins that run the tiny diffusers UNet."""

    def __init__(self, root: Path, text_encoder, unet, vae):
        import torch

        self.root = Path(root)
        self.vae = vae
        upstream.check_files(self.root, COMFYUI_FILES, "--comfyui")
        self._emb = tempfile.TemporaryDirectory()  # no embeddings: the tokenizer wants a folder
        self.prompts = ref_prompts.ComfyUI(self.root, Path(self._emb.name))
        self.text_encoder = text_encoder
        upstream.optional_standins()
        upstream.comfy_packages(self.root, kd.COMFY_PACKAGES)  # comfy itself: ref_prompts.ComfyUI
        cpu = torch.device("cpu")
        self.device = cpu
        upstream.sink_module("comfy.model_management", intermediate_device=lambda: cpu, get_torch_device=lambda: cpu,
                             get_free_memory=lambda dev=None, torch_free_too=False: FREE_MEMORY)
        for name in ("hooks", "context_windows", "float", "lora", "comfy_types"):
            upstream.sink_module(f"comfy.{name}")
        self.utils = importlib.import_module("comfy.utils")
        self.conds = importlib.import_module("comfy.conds")
        importlib.import_module("comfy.patcher_extension")
        importlib.import_module("comfy.sampler_helpers")
        self.model_patcher = importlib.import_module("comfy.model_patcher")
        self.model_sampling = importlib.import_module("comfy.model_sampling")
        self.latent_formats = importlib.import_module("comfy.latent_formats")
        self.sampling = importlib.import_module("comfy.k_diffusion.sampling")
        self.samplers = importlib.import_module("comfy.samplers")
        self.sample = importlib.import_module("comfy.sample")
        self.recorder = None

        ms_mod = self.model_sampling
        # comfy.model_base.model_sampling(SD15 config (sampling_settings {}), ModelType.EPS)
        self.ms = type("ModelSampling", (ms_mod.ModelSamplingDiscrete, ms_mod.EPS), {})(
            types.SimpleNamespace(sampling_settings={}))
        outer = self
        conds_mod = self.conds
        # comfy.model_base.BaseModel itself, for its extra_conds / concat_cond / encode_adm / set_inpaint (its module
        # imports every model family; the class alone runs over the names those methods read)
        import logging
        comfy = importlib.import_module("comfy")
        comfy.conds, comfy.utils = self.conds, self.utils
        self.base_model = upstream.class_from_source(
            self.root / "comfy/model_base.py", "BaseModel",
            {"torch": torch, "logging": logging, "comfy": comfy, "utils": self.utils,
             "ModelType": types.SimpleNamespace(EPS="EPS"), "UNetModel": None})
        base_model = self.base_model

        class PatcherState:
            """BaseModel.current_patcher: no hooks, no callbacks."""

            def prepare_state(self, timestep):
                pass

            def apply_hooks(self, hooks, transformer_options=None, force_apply=False):
                assert hooks is None
                return {}  # comfy.hooks.create_transformer_options_from_hooks(model, None): {}

        class BaseModelStandIn:
            """comfy.model_base.BaseModel for SD 1.5 (EPS) with the tiny diffusers UNet as diffusion_model."""

            def __init__(self):
                self.model_sampling = outer.ms
                self.latent_format = outer.latent_formats.SD15()
                self.current_patcher = PatcherState()
                self.concat_keys = ()  # BaseModel.__init__; set_inpaint for the inpainting model

            def extra_conds(self, **kwargs):
                """BaseModel.extra_conds itself: the inpainting model's c_concat (concat_cond), no adm, the text as
                CONDCrossAttn."""
                return base_model.extra_conds(self, **kwargs)

            def concat_cond(self, **kwargs):
                return base_model.concat_cond(self, **kwargs)

            def encode_adm(self, **kwargs):
                return base_model.encode_adm(self, **kwargs)

            def memory_required(self, input_shape, cond_shapes={}):
                return 0

            def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                            **kwargs):
                """BaseModel._apply_model, float32, no control / extra conds."""
                assert control is None and not kwargs
                sigma = t
                xc = self.model_sampling.calculate_input(sigma, x)
                if c_concat is not None:
                    xc = torch.cat([xc] + [c_concat.to(xc.device, xc.dtype)], dim=1)
                xc = xc.to(torch.float32)
                t = self.model_sampling.timestep(t).float()
                context = c_crossattn.to(torch.float32)
                if outer.recorder is not None:
                    outer.recorder.note(context, t)
                with torch.no_grad():
                    model_output = outer.unet(xc, t, encoder_hidden_states=context).sample.float()
                return self.model_sampling.calculate_denoised(sigma, model_output, x)

            def process_latent_in(self, latent):
                return self.latent_format.process_in(latent)

            def process_latent_out(self, latent):
                return self.latent_format.process_out(latent)

            def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
                # BaseModel.scale_latent_inpaint: the init latents noised to sigma
                return self.model_sampling.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (len(noise.shape) - 1)),
                                                         noise, latent_image)

        class ModelPatcherStandIn:
            """comfy.model_patcher.ModelPatcher as far as KSampler / CFGGuider read it."""
            load_device = cpu

            def __init__(self, model):
                self.model = model
                self.model_options = {"transformer_options": {}}

            def get_model_object(self, name):
                return getattr(self.model, name)

        self.patcher = ModelPatcherStandIn(BaseModelStandIn())
        self.unets = {"tiny-sd": unet}  # main() adds the inpainting model's
        self.unet = unet

    def source(self, log) -> dict:
        return upstream.pinned_source(self.root, "comfyui", COMFYUI_FILES, log, RECORDER)

    def run_two_passes(self, s: Settings) -> dict:
        """KSampler -> LatentUpscaleBy / LatentUpscale (nodes.py's own classes) -> KSampler, as ComfyUI's two-pass
        ("hires fix") example graph: the first pass's LATENT (process_latent_out of its samples) scaled, then
        sampled again from the second KSampler's seed at its denoise."""
        import torch

        h = s.hires
        first = self.run(replace(s, hires=None))
        latent = (first["samples"] / 0.18215).float()
        namespace = {"torch": torch, "comfy": importlib.import_module("comfy"), "MAX_RESOLUTION": 16384}
        namespace["comfy"].utils = self.utils
        method = {"latent": "bilinear", "latent-nearest-exact": "nearest-exact", "latent-bicubic": "bicubic",
                  "latent-area": "area", "latent-bislerp": "bislerp"}[h["upscaler"]]
        node = upstream.class_from_source(self.root / "nodes.py", s.hires_node, namespace)
        if s.hires_node == "LatentUpscaleBy":
            (scaled,) = node().upscale({"samples": latent}, method, h["scale"])
        else:
            (scaled,) = node().upscale({"samples": latent}, method, int(s.width * h["scale"]), int(s.height * h["scale"]),
                                       "disabled")
        up = scaled["samples"]
        second = replace(s, hires=None, seed=h.get("seed", s.seed), steps=h.get("steps") or s.steps,
                         strength=h["strength"], width=up.shape[-1] * 8, height=up.shape[-2] * 8)
        out = self.run(second, start_latent=up)
        out["tool"]["first_pass"] = {k: first["tool"][k] for k in ("unet_calls", "step_noise_draws", "max_denoise")}
        out["tool"]["upscale"] = f"{s.hires_node}({method}) to {tuple(up.shape[-2:])} latents"
        out["size"] = (second.height, second.width)
        return out

    @staticmethod
    def load_image_mask_red(s: "Settings"):
        """LoadImageMask(channel "red") of the case's mask.png: the picture as RGBA, its R channel / 255
        (nodes.py), [1, H, W]."""
        import torch
        from PIL import Image
        picture = Image.fromarray(mask_image(*(s.init_size or (s.width, s.height)))).convert("RGBA")
        return torch.from_numpy(np.array(picture.getchannel("R")).astype(np.float32) / 255.0).unsqueeze(0)

    def conditioning(self, text: str):
        """CLIPTextEncode's output for ``text``: [[cond [1,77,32], {}]] (pooled output left out: SD 1.5's
        extra_conds does not read it)."""
        z = self.prompts.encode_windows(self.text_encoder, self.prompts.windows(text), 1)
        return [[z.reshape(1, *z.shape[-2:]).float(), {}]]

    def conditioning_nodes(self) -> dict:
        """nodes.py's own conditioning node classes, instantiated."""
        import logging

        import torch
        spec = importlib.util.spec_from_file_location("node_helpers", self.root / "node_helpers.py")
        helpers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helpers)
        namespace = {"torch": torch, "logging": logging, "node_helpers": helpers, "MAX_RESOLUTION": 16384}
        names = ("ConditioningCombine", "ConditioningConcat", "ConditioningAverage", "ConditioningSetArea")
        return {n: upstream.class_from_source(self.root / "nodes.py", n, namespace)() for n in names}

    def conditioning_list(self, entries: list, nodes: dict):
        """A conditioning list of the request's vocabulary as ComfyUI's nodes build it: each entry's expression,
        ConditioningSetArea for its area, the entries joined by ConditioningCombine in order."""
        def expression(x):
            if "text" in x:
                return self.conditioning(x["text"])
            if "concat" in x:
                (c,) = nodes["ConditioningConcat"].concat(expression(x["concat"]["to"]), expression(x["concat"]["from"]))
                return c
            a = x["average"]
            (c,) = nodes["ConditioningAverage"].addWeighted(expression(a["to"]), expression(a["from"]), a["to_strength"])
            return c

        out = None
        for e in entries:
            c = expression(e["encoding"])
            if "area" in e:
                a = e["area"]
                (c,) = nodes["ConditioningSetArea"].append(c, a["width"], a["height"], a["x"], a["y"], e.get("strength", 1.0))
            out = c if out is None else nodes["ConditioningCombine"].combine(out, c)[0]
        return out

    def run_chain(self, s: Settings) -> dict:
        """A chain of KSamplerAdvanced nodes (nodes.py's common_ksampler each time): the first over the case's
        latent, each later one over the LATENT the one before returned (process_latent_out of its samples, which
        the next KSampler's inner_sample takes back in), with its own seed, steps, CFG, sampler, scheduler and
        window. The record: the last stage's samples and images; the first stage's noise, sigmas and tool record,
        with the later stages' under tool.chain."""
        defaults = {"start_at_step": 0, "end_at_step": 10000, "add_noise": True, "return_with_leftover_noise": False}
        first = self.run(replace(s, stages=()))
        out, stages_tools = first, []
        for stage in s.stages:
            latent = (out["samples"] / 0.18215).float()
            nxt = replace(s, stages=(), seed=stage.get("seed", s.seed), steps=stage.get("steps", s.steps),
                          cfg_scale=stage.get("cfg_scale", s.cfg_scale), sampler=stage.get("sampler", s.sampler),
                          schedule=stage.get("schedule", s.schedule), strength=None,
                          prompt=stage.get("prompt", s.prompt), negative_prompt=stage.get("negative_prompt", s.negative_prompt),
                          sampling_range={**defaults, **stage["sampling_range"]})
            out = self.run(nxt, start_latent=latent)
            stages_tools.append(out["tool"])
        later = [{k: t[k] for k in ("unet_calls", "step_noise_draws", "noise_sampler_seed", "max_denoise", "x0_scale")}
                 for t in stages_tools]
        tool = {**first["tool"], "chain": {"later_stages": later, "last_stage_sigmas": [float(v) for v in out["sigmas"]],
                                           "handed_on": "LATENT = samples / 0.18215 (process_latent_out), taken "
                                                        "back in * 0.18215 by the next KSampler"}}
        return {**out, "noise": first["noise"], "sigmas": first["sigmas"], "tool": tool}

    def run(self, s: Settings, start_latent=None) -> dict:
        import torch

        if s.hires is not None:
            return self.run_two_passes(s)
        if s.stages:
            return self.run_chain(s)
        handed_on = start_latent is not None  # a LATENT from another KSampler
        # the case's model: its UNet, and BaseModel.set_inpaint for the inpainting one (comfy.model_base's
        # inpaint_model() check on the UNet's 9 input channels)
        self.unet = self.unets[s.model]
        model = self.patcher.model
        model.concat_keys = ()
        if self.unet.config.in_channels == 9:
            self.base_model.set_inpaint(model)
        samplers, patcher = self.samplers, self.patcher
        positive, negative = self.conditioning(s.prompt), self.conditioning(s.negative_prompt)
        if s.conditioning is not None:
            nodes = self.conditioning_nodes()
            positive = self.conditioning_list(s.conditioning["positive"], nodes)
            if s.conditioning.get("negative"):
                negative = self.conditioning_list(s.conditioning["negative"], nodes)
        if s.combined_prompts:
            combine = upstream.class_from_source(self.root / "nodes.py", "ConditioningCombine", {})
            for text in s.combined_prompts:
                (positive,) = combine().combine(positive, self.conditioning(text))
        noise_mask = None
        if start_latent is not None:
            # A LATENT handed on from another node (the second pass of a two-pass graph)
            latent = start_latent
        elif s.strength is None and s.batch_index is not None:
            # EmptyLatentImage of batch_index + batch_size images, then LatentFromBatch (nodes.py's own class), whose
            # LATENT carries the batch_index list that common_ksampler hands to prepare_noise
            empty = torch.zeros([s.batch_index + s.batch_size, 4, s.height // 8, s.width // 8], device=self.device)
            node = upstream.class_from_source(self.root / "nodes.py", "LatentFromBatch", {"torch": torch, "math": math})
            (picked,) = node().frombatch({"samples": empty}, s.batch_index, s.batch_size)
            latent, batch_inds = picked["samples"], picked["batch_index"]
            assert batch_inds == list(range(s.batch_index, s.batch_index + s.batch_size))
        elif s.strength is None:
            # EmptyLatentImage.generate (intermediate device = CPU)
            latent = torch.zeros([s.batch_size, 4, s.height // 8, s.width // 8], device=self.device)
        else:
            # LoadImage (RGB / 255, float32) -> VAEEncode (VAE.encode: x * 2 - 1 through the encoder;
            # its DiagonalGaussianRegularizer(sample=False) takes the mode, the mean) -> RepeatLatentBatch
            pixels = torch.from_numpy(init_image(*(s.init_size or (s.width, s.height))).astype(np.float32) / 255.0)[None]
            pad_mask = None
            if s.pad is not None:
                node = upstream.class_from_source(self.root / "nodes.py", "ImagePadForOutpaint", {"torch": torch})
                pixels, pad_mask = node().expand_image(pixels, *s.pad)
                assert tuple(pixels.shape[1:3]) == (s.height, s.width), pixels.shape
            elif s.invert_then_scale_by is not None:
                # ImageInvert.invert, then ImageScaleBy.upscale (nodes.py's own classes; common_upscale lanczos)
                namespace = {"torch": torch, "comfy": importlib.import_module("comfy")}
                namespace["comfy"].utils = self.utils
                invert = upstream.class_from_source(self.root / "nodes.py", "ImageInvert", namespace)
                scale_by = upstream.class_from_source(self.root / "nodes.py", "ImageScaleBy", namespace)
                (pixels,) = invert().invert(pixels)
                (pixels,) = scale_by().upscale(pixels, "lanczos", s.invert_then_scale_by)
                assert tuple(pixels.shape[1:3]) == (s.height, s.width), pixels.shape
            elif s.init_size is not None and not s.init_crop:
                # ImageScale.upscale (nodes.py): common_upscale over channels-first pixels, lanczos, no crop
                pixels = self.utils.common_upscale(pixels.movedim(-1, 1), s.width, s.height, "lanczos", "disabled").movedim(1, -1)
            if s.mask_grow is None:
                if s.init_crop:
                    # VAE.encode's vae_encode_crop_pixels (comfy/sd.py's own method, crop_input on, ratio 8)
                    vae_class = upstream.class_from_source(self.root / "comfy/sd.py", "VAE", {})
                    me = types.SimpleNamespace(crop_input=True, spacial_compression_encode=lambda: 8)
                    pixels = vae_class.vae_encode_crop_pixels(me, pixels)
                    assert tuple(pixels.shape[1:3]) == (s.height, s.width), pixels.shape
                with torch.no_grad():
                    mean = self.vae.encode(pixels.movedim(-1, 1) * 2.0 - 1.0).latent_dist.mode()
            else:
                # VAEEncodeForInpaint.encode itself (nodes.py), over the VAE's mean as VAE.encode gives it
                vae = self.vae

                class Vae:
                    downscale_ratio = 8

                    def encode(self, p):
                        return vae.encode(p.movedim(-1, 1) * 2.0 - 1.0).latent_dist.mode()

                node = upstream.class_from_source(self.root / "nodes.py", "VAEEncodeForInpaint",
                                                  {"torch": torch, "math": math})
                with torch.no_grad():
                    mask = self.load_image_mask_red(s) if pad_mask is None else pad_mask
                    (encoded,) = node().encode(Vae(), pixels, mask, s.mask_grow)
                mean, noise_mask = encoded["samples"], encoded["noise_mask"]
            latent = mean.to(self.device).float().repeat(s.batch_size, 1, 1, 1)
        # nodes.common_ksampler
        latent_image = self.sample.fix_empty_latent_channels(patcher, latent)
        batch_inds = list(range(s.batch_index, s.batch_index + s.batch_size)) if s.batch_index is not None else None
        noise = self.sample.prepare_noise(latent_image, s.seed, batch_inds)
        # comfy.sample.sample -> KSampler(...).sample -> comfy.samplers.sample -> CFGGuider.sample
        ks = samplers.KSampler(patcher, steps=s.steps, device=patcher.load_device, sampler=s.sampler,
                               scheduler=s.schedule, denoise=1.0 if s.strength is None else s.strength,
                               model_options=patcher.model_options)
        assert ks.sampler == s.sampler and ks.scheduler == s.schedule
        sigmas = ks.sigmas
        if s.sampling_range is not None:
            # KSamplerAdvanced -> common_ksampler(disable_noise, start_step, last_step, force_full_denoise) ->
            # KSampler.sample, whose window cuts the schedule; its hand-off to comfy.samplers.sample is
            # caught for the sigmas (the rest runs below as for every case).
            r = s.sampling_range
            if not r["add_noise"]:
                noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout,
                                    device="cpu")
            caught = {}

            def catch(_model, _noise, _pos, _neg, _cfg, _device, _sampler, window, *_a, **_k):
                caught["sigmas"] = window.clone()
                return "caught"

            with upstream.patched(samplers, "sample", catch):
                assert ks.sample(noise, positive, negative, s.cfg_scale, latent_image=latent_image,
                                 start_step=r["start_at_step"], last_step=r["end_at_step"],
                                 force_full_denoise=not r["return_with_leftover_noise"], seed=s.seed) == "caught"
            sigmas = caught["sigmas"]
        sampler = samplers.sampler_object(ks.sampler)
        guider = samplers.CFGGuider(patcher)
        guider.set_conds(positive, negative)
        guider.set_cfg(s.cfg_scale)
        # CFGGuider.sample without hooks / ControlNets: copy the conds, clone the model options; outer_sample:
        # prepare_sampling loads the model and returns patcher.model
        guider.conds = {k: [a.copy() for a in v] for k, v in guider.original_conds.items()}
        samplers.preprocess_conds_hooks(guider.conds)
        guider.model_options = self.model_patcher.create_model_options_clone(guider.model_options)
        guider.inner_model = patcher.model

        denoise_mask = None
        if s.masked:
            # SetLatentNoiseMask reshapes the mask to [-1, 1, H, W] (VAEEncodeForInpaint gives its noise mask so);
            # CFGGuider.outer_sample's prepare_mask (run here, as inner_sample is called directly) sizes it to the
            # latents.
            if noise_mask is None:
                mask = self.load_image_mask_red(s)
                mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
            else:
                mask = noise_mask
            helpers = importlib.import_module("comfy.sampler_helpers")
            denoise_mask = helpers.prepare_mask(mask, noise.shape, patcher.load_device)

        seen, draws = {}, {"n": 0}
        sample_fn = sampler.sample

        def recording_sample(*args, **kwargs):
            out = sample_fn(*args, **kwargs)
            seen["samples"] = out.detach().clone()
            return out

        sampler.sample = recording_sample
        func = sampler.sampler_function

        @functools.wraps(func)
        def recording_func(model, x, sigmas_arg, *args, **kwargs):
            seen["x0"] = x.detach().clone()
            seen["sigmas"] = sigmas_arg.detach().clone()
            return func(model, x, sigmas_arg, *args, **kwargs)

        sampler.sampler_function = recording_func
        dns = self.sampling.default_noise_sampler

        def counting_default_noise_sampler(x, seed=None):
            seen["noise_sampler_seed"] = seed
            inner = dns(x, seed=seed)

            def draw(sigma, sigma_next):
                draws["n"] += 1
                return inner(sigma, sigma_next)
            return draw

        callback_i = []
        uncond_row = negative[0][0][0]
        self.recorder = UNetCalls(positive[0][0][0], uncond_row)
        try:
            with upstream.patched(self.sampling, "default_noise_sampler", counting_default_noise_sampler):
                out = guider.inner_sample(noise, latent_image, patcher.load_device, sampler, sigmas, denoise_mask,
                                          lambda i, d, x, n: callback_i.append(i), True, s.seed)
        finally:
            recorder, self.recorder = self.recorder, None
        out = out.to(self.device)  # comfy.sample.sample: samples.to(intermediate_device())

        # VAEDecode: VAE.decode (batched: free memory / memory used covers the batch), process_output, movedim
        z = out
        with torch.no_grad():
            pixels = torch.clamp((self.vae.decode(z).sample.float() + 1.0) / 2.0, min=0.0, max=1.0)
        pixels = pixels.movedim(1, -1)
        # SaveImage: 255. * image, np.clip(0, 255), astype(np.uint8)
        images = []
        for image in pixels:
            i = 255. * image.cpu().numpy()
            images.append(np.clip(i, 0, 255).astype(np.uint8))

        samples = seen["samples"]
        assert torch.equal(out, patcher.model.process_latent_out(samples.to(torch.float32)))
        max_denoise = sampler.max_denoise(guider, seen["sigmas"])
        # The start: noise scaled to sigmas[0], plus the (model-space) latent for image-to-image.
        start_latent = patcher.model.process_latent_in(latent_image.to(torch.float32))
        scale = (kd._x0_scale(seen["x0"] - start_latent, noise) if s.strength is None and bool(noise.any()) and not handed_on
                 else float(seen["sigmas"][0]))
        if s.strength is not None and max_denoise:  # a full-strength start: noise * sqrt(1 + sigma0^2) + latent
            scale = float(torch.sqrt(1.0 + seen["sigmas"][0] ** 2.0))
            expected = patcher.model.model_sampling.noise_scaling(seen["sigmas"][0], noise, start_latent, True)
            assert torch.equal(expected, seen["x0"]), "image-to-image start is not ComfyUI's noise_scaling"
        elif s.strength is not None:
            expected = noise * torch.tensor(scale, dtype=torch.float32) + start_latent
            assert torch.equal(expected, seen["x0"]), "image-to-image start is not noise * sigma0 + latent"
        tool = {
            "sampler_function": func.__name__ if hasattr(func, "__name__") else str(func),
            "noise": "comfy.sample.prepare_noise(zeros [B,4,h/8,w/8], seed): torch.randn(shape, "
                     "generator=torch.manual_seed(seed)) (one draw for the batch)",
            "x0": "EPS.noise_scaling(sigmas[0], noise, latent_image, max_denoise) = noise * sqrt(1 + sigma0^2) + 0 "
                  "when max_denoise else noise * sigma0 + 0",
            "max_denoise": bool(max_denoise), "x0_scale": scale,
            "noise_sampler_seed": seen.get("noise_sampler_seed"),
            "step_noise_draws": draws["n"],
            "unet_calls": recorder.calls,
            "unet_batch": recorder.first_batch,
            "unet_timesteps": recorder.timesteps,
            "callback_steps": len(callback_i),
            # process_conds' lists: each entry's latent area (h, w, y, x) and strength, same-area entries added
            "conds": {k: [[list(c["area"]) if "area" in c else None, c.get("strength", 1.0)] for c in v]
                      for k, v in guider.conds.items()},
            "decoder_input": "LATENT = process_latent_out(latents.npy) = latents.npy / 0.18215, whole batch in one "
                             "decode",
        }
        return {"samples": samples, "noise": noise, "sigmas": seen["sigmas"], "images": images, "tool": tool}


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------

FINDINGS = {
    "a1111": [
        "process_images_inner (processing.py): all_seeds[i] = seed + i only when subseed_strength == 0; with a "
        "variation strength every image gets the same seed (subseeds are subseed + i)",
        "setup_conds: conditioning over batch_size copies of the prompt (SdConditioning), steps = "
        "sampler_config.total_steps(steps) (doubled only for second_order samplers)",
        "Txt2Img.sample: x = rng.next() (ImageRNG.first(): per-image generator, slerp with the subseed noise drawn "
        "by rng.randn from the global generator seeded with the subseed); image_conditioning = zeros [B,5,1,1]",
        "KDiffusionSampler.sample: x * sigmas[0]; Sampler.initialize sets k_diffusion.sampling.torch = "
        "TorchHijack(p), so every torch.randn_like in k-diffusion is ImageRNG.next() (one draw per image generator)",
        "CFGDenoiser.forward: one UNet batch [cond rows (one per image and AND part), uncond rows] (batch_cond_uncond "
        "True), sigma per row; combine_denoised: denoised = uncond; denoised[i] += (cond - uncond) * (weight * "
        "cond_scale) on the denoised (x0) predictions",
        "CompVisDenoiser (k-diffusion DiscreteEpsDDPMDenoiser): x * c_in with c_in = 1 / sqrt(sigma^2 + 1), t = "
        "sigma_to_t(sigma) fractional (log-linear interpolation, quantize False), denoised = x + eps * (-sigma)",
        "sd_hijack_unet.apply_model casts x, t and cond to devices.dtype_unet (float16 on a GPU by default; float32 "
        "here)",
        "decode_latent_batch decodes one image at a time; LDM decode_first_stage computes 1. / scale_factor * z "
        "(Stability-AI/stablediffusion ldm/models/diffusion/ddpm.py, not in the webui checkout)",
        "x = clamp((x + 1) / 2, 0, 1); 255. * np.moveaxis(x, 0, 2); astype(np.uint8): truncation, no rounding",
        "inpainting, Img2Img.init: the mask through create_binary_mask (an L picture stays as it is), then OpenCV "
        "GaussianBlur along x, then along y (kernel 2 * int(2.5 * blur + 0.5) + 1, sigma = mask_blur; none at 0); "
        "whole picture: resize_image(resize_mode) to width x height, overlay mask clip(2 * mask); only masked: the "
        "overlay mask is the blurred mask itself, the box masking.get_crop_region_v2(mask, padding) grown by "
        "expand_crop_region to the processing aspect, mask and picture cut out and resize_image(2) to width x height "
        "(the mask comes back as an RGB picture), paste_to = (x1, y1, x2 - x1, y2 - y1)",
        "inpainting, the latent mask: latent_mask.convert('RGB').resize((w / 8, h / 8)) (PIL's default filter, "
        "bicubic), channel 0 / 255, np.around (mask_round); p.mask = 1 - latmask (kept), p.nmask = latmask "
        "(repainted), the same for each latent channel",
        "inpainting, masked content: fill (0) = masking.fill of the picture at the processing size before the VAE "
        "encode; latent noise (2) = init_latent * mask + create_random_tensors(shape, all_seeds) * nmask, and since "
        "p.init runs before process_images_inner makes p.rng, that draw (a fresh ImageRNG's first) is the start "
        "noise itself; latent nothing (3) = init_latent * mask; original (1) leaves both alone",
        "inpainting, the blend: Sampler.initialize gives the CFG denoiser p.mask / p.nmask and sample_img2img its "
        "init_latent (the filled one); k-diffusion samplers blend each denoised prediction after CFG (denoised * "
        "nmask + init_latent * mask), the timestep samplers (CFGDenoiserTimesteps: mask_before_denoising) blend x "
        "itself before every model call, with the clean init latents; Img2Img.sample blends the result once more "
        "(latents.npy)",
        "inpainting, apply_overlay: the uint8 picture (only masked: uncrop, resize_image(1) to the paste box on a "
        "transparent RGBA picture of the init picture's size) alpha_composite'd under the overlay (the init picture "
        "pasted on RGBa through the inverted overlay mask), then RGB: the images have the init picture's size",
    ],
    "comfyui": [
        "common_ksampler: noise = prepare_noise(latent, seed): one torch.randn([B,4,h/8,w/8]) from "
        "torch.manual_seed(seed) (the global generator), batch_index absent",
        "KSAMPLER.sample: x = noise * sqrt(1 + sigma0^2) (+ latent 0) when max_denoise (sigma0 within rel 1e-5 of "
        "sigma_max), else noise * sigma0; samplers draw step noise from default_noise_sampler(x, "
        "seed=extra_args['seed']) = a torch.Generator seeded with the KSampler seed (no offset at this revision)",
        "calc_cond_batch: cond and uncond run in one UNet batch, in the order [uncond rows, cond rows] (to_batch "
        "is reversed), conditioning repeated to the batch size; out = (0 + out * 1) / (1e-37 + 1)",
        "BaseModel._apply_model: x / sqrt(sigma^2 + 1), t = ModelSamplingDiscrete.timestep(sigma).float() (the "
        "nearest integer timestep in log sigma), denoised = x - eps * sigma",
        "cfg_function: uncond + (cond - uncond) * cfg on the denoised (x0) predictions",
        "CFGGuider.inner_sample returns process_latent_out(samples) = samples / 0.18215: the KSampler node's LATENT "
        "is already divided; VAEDecode passes it to the VAE as is",
        "VAE.decode: clamp((x + 1) / 2, 0, 1), batched; SaveImage: 255. * x, np.clip(0, 255), astype(np.uint8) "
        "(truncation)",
    ],
}

SUBSTITUTIONS = [
    "UNet: diffusers UNet2DConditionModel (models/tiny-sd-torch/unet) for LDM's UNetModel (A1111) and comfy.ldm's "
    "UNetModel (ComfyUI); A1111 hands it fractional float32 timesteps, ComfyUI integer-valued float32 ones",
    "VAE: diffusers AutoencoderKL.decode for LDM / comfy.ldm AutoencoderKL.decode (post_quant_conv + decoder)",
    "text conditioning: tooling.ref_prompts (A1111 prompt_parser + sd_hijack_clip over the tiny CLIP; ComfyUI "
    "sd1_clip token weights via ClipTokenWeightEncoder over the same CLIP)",
    "A1111: a LatentDiffusion stand-in (alphas_cumprod, apply_model = DiffusionWrapper 'crossattn', "
    "decode_first_stage); processing.py's txt2img steps followed in run() (not importable); modules.shared / "
    "devices stand-ins in float32; script_callbacks is the real module with fastapi / gradio / extensions stand-ins",
    "ComfyUI: BaseModel / ModelPatcher stand-ins (apply_model = BaseModel._apply_model's steps; extra_conds = "
    "CONDCrossAttn only; no hooks); the upstream CFGGuider runs from inner_sample down, CFGGuider.sample / "
    "outer_sample's model loading and hook set-up are skipped (no hooks, no ControlNets); "
    "comfy.model_management stand-in (CPU, free memory 2^40); VAE.decode / SaveImage lines followed in run()",
    "betas: ComfyUI's make_beta_schedule (a copy of LDM's) with configs/v1-inference.yaml's linear_start / "
    "linear_end / timesteps for A1111; ModelSamplingDiscrete's own for ComfyUI",
    "A1111 inpainting: processing.py's StableDiffusionProcessing / StableDiffusionProcessingImg2Img dataclasses "
    "(__post_init__, the mask_blur setter, fill_fields_from_opts, init, img2img_image_conditioning, sample), "
    "create_binary_mask, create_random_tensors, apply_overlay and uncrop, and images.py's LANCZOS / resize_image / "
    "flatten, extracted with ast and run over the real numpy, torch, PIL, OpenCV, masking.py, rng.py and "
    "sd_samplers.py (create_sampler) and the float32 shared / devices stand-ins (devices.torch_gc and "
    "cond_cast_float as the identity); process_images_inner is followed in run(): lines 898-904 "
    "(fill_fields_from_opts, all_seeds), 921 (p.init), 949 (p.rng), 988 (p.sample), 1002-1035 (decode one image "
    "at a time, clamp, 255 *, astype(uint8)) and 1053-1077 (overlay_images[i] while opts.overlay_inpaint, no "
    "colour correction, apply_overlay) of the pinned file; the mask and picture are PIL pictures of mask.png (L) "
    "and init.png (RGB), as the API decodes them; PIL is the venv's Pillow (A1111 pins 9.5.0), OpenCV "
    "opencv-python-headless 4.10.0.84",
]


def record_case(case: Case, result: dict, out: Path) -> dict:
    d = out / case.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    from PIL import Image

    s = case.settings
    (d / "settings.json").write_text(json.dumps(s.request(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    np.save(d / "latents.npy", upstream.f32(result["samples"]))
    np.save(d / "noise.npy", upstream.f32(result["noise"]))
    np.save(d / "sigmas.npy", upstream.f32(result["sigmas"]))
    files = ["settings.json", "latents.npy", "noise.npy", "sigmas.npy"]
    if s.strength is not None:
        Image.fromarray(init_image(*(s.init_size or (s.width, s.height)))).save(d / "init.png", optimize=False)
        files.append("init.png")
    if s.masked and s.pad is None:
        Image.fromarray(mask_image(*(s.init_size or (s.width, s.height)))).save(d / "mask.png", optimize=False)
        files.append("mask.png")
    for i, img in enumerate(result["images"]):
        assert img.dtype == np.uint8 and img.shape == (*result.get("size", (s.height, s.width)), 3)
        Image.fromarray(img).save(d / f"image_{i}.png", optimize=False)
        files.append(f"image_{i}.png")
    graph = {k: v for k, v in (("invert_then_scale_by", s.invert_then_scale_by), ("pad", s.pad)) if v is not None}
    if s.init_crop:
        graph["init_crop"] = True
    if s.hires is not None and s.compat == "comfyui":
        graph["hires_node"] = s.hires_node
    return {"name": case.name, "what": case.what, "settings": s.request(), **({"graph": graph} if graph else {}),
            "sigmas": [float(v) for v in result["sigmas"]], "tool": result["tool"], "files": files}


def main(out: Path, a1111_dir: str | None = None, comfyui_dir: str | None = None, log=print) -> int:
    import diffusers
    import torch

    a1111_dir, comfyui_dir = upstream.checkouts("ref_compat_images", a1111_dir, comfyui_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # single-threaded: bit-identical reruns on the same machine
    os.environ.setdefault("TQDM_DISABLE", "1")

    text_encoder, tokenizer = ref_prompts.load_text_encoder()
    unet, vae, scaling_factor = load_networks()
    c = ComfyUI(comfyui_dir, text_encoder, unet, vae)  # first: its make_beta_schedule builds A1111's betas
    util = importlib.import_module("comfy.ldm.modules.diffusionmodules.util")
    a1111_cfg = _v1_inference(a1111_dir)
    betas = util.make_beta_schedule("linear", int(a1111_cfg["timesteps"]), linear_start=a1111_cfg["linear_start"],
                                    linear_end=a1111_cfg["linear_end"])
    a = A1111(a1111_dir, text_encoder, tokenizer, unet, vae, betas)
    a.unets["tiny-sd-inpaint"] = c.unets["tiny-sd-inpaint"] = load_inpainting_unet()
    if not math.isclose(a.scale_factor, scaling_factor) or not math.isclose(
            c.patcher.model.latent_format.scale_factor, scaling_factor):
        raise SystemExit(f"ref_compat_images: the tiny VAE's scaling_factor {scaling_factor} differs from the tools' "
                         f"({a.scale_factor}, {c.patcher.model.latent_format.scale_factor})")

    # A1111's model table is the one tests/fixtures/kdiffusion recorded
    a_sigmas = a.kdiffusion.KDiffusionSampler("sample_euler", a.sd_model).model_wrap.sigmas
    table = Path(__file__).resolve().parents[2] / "tests/fixtures/kdiffusion/model_sigmas_a1111.npy"
    # EASEL_REF_CASES=name,name records only those cases into the existing cases.json (the others stay as recorded).
    only = [n for n in os.environ.get("EASEL_REF_CASES", "").split(",") if n]
    unknown = set(only) - {case.name for case in CASES}
    if unknown:
        raise SystemExit(f"ref_compat_images: EASEL_REF_CASES names no case {sorted(unknown)}")
    local, stored = upstream.f32(a_sigmas), np.load(table) if table.is_file() else None
    if stored is not None and not np.array_equal(stored, local) and np.all(np.abs(local - stored) <= np.spacing(stored)):
        # This CPU's float32 pow rounds some of ((1 - ac) / ac) ** 0.5 one bit away from the table A1111's code made
        # when tests/fixtures/kdiffusion was recorded: A1111's samplers get that table (k-diffusion's
        # DiscreteSchedule built from it), so every A1111 case samples the sigmas the other fixtures and Easel use.
        ext = sys.modules["k_diffusion.external"]
        built = ext.DiscreteSchedule.__init__
        stored_t = torch.from_numpy(stored)

        def with_stored_table(self, sigmas, quantize):
            if sigmas.shape == stored_t.shape and np.all(np.abs(upstream.f32(sigmas) - stored) <= np.spacing(stored)):
                sigmas = stored_t.clone().to(sigmas.dtype)
            built(self, sigmas, quantize)

        ext.DiscreteSchedule.__init__ = with_stored_table
        log(f"  note: A1111's sigma table here differs from {table} in the last float32 bit of "
            f"{int(np.sum(local != stored))} entries (this CPU's pow); A1111's samplers use the stored table")
        a_sigmas = a.kdiffusion.KDiffusionSampler("sample_euler", a.sd_model).model_wrap.sigmas
    if table.is_file() and not np.array_equal(np.load(table), upstream.f32(a_sigmas)):
        # ComfyUI's cases and A1111's timestep samplers never read it, LCM reads its own; every other case does.
        sigma_free = all(case.settings.compat != "a1111"
                         or a.samplers_map[case.settings.sampler] in [*a.timesteps.samplers_data_timesteps,
                                                                      *a.lcm.samplers_data_lcm]
                         for case in CASES if case.name in only)
        if not (only and sigma_free):
            raise SystemExit(f"ref_compat_images: A1111's sigma table differs from {table}")
        log(f"  note: A1111's sigma table here differs from {table} by at most "
            f"{float(np.abs(np.load(table) - upstream.f32(a_sigmas)).max()):.3g} (last-bit float32 rounding of "
            "this CPU); the cases recorded now do not read it")

    for stale in out.iterdir():
        if not only and stale.is_dir() and stale.name not in {case.name for case in CASES}:
            shutil.rmtree(stale)
    kept = {e["name"]: e for e in json.loads((out / "cases.json").read_text(encoding="utf-8"))["cases"]} if only else {}
    entries = []
    for case in CASES:
        if only and case.name not in only:
            if case.name in kept:
                entries.append(kept[case.name])
            continue
        runner = a if case.settings.compat == "a1111" else c
        result = runner.run(case.settings)
        entries.append(record_case(case, result, out))
        t = result["tool"]
        log(f"  {case.name}: {t['unet_calls']} UNet calls, {t['step_noise_draws']} step noise draws, "
            f"{len(result['images'])} image(s)")

    index = {
        "what": "final latents and 8-bit images of A1111 and ComfyUI txt2img, img2img and inpainting with the tiny test model, recorded by "
                "running their prompt, noise, schedule, CFG and k-diffusion sampler code around the tiny diffusers "
                "UNet / VAE",
        "regenerate": "cd models && .venv/bin/python -m tooling.ref_compat_images --a1111 DIR --comfyui DIR "
                      "../tests/fixtures/compat_images",
        "source": {"a1111": a.source(log), "comfyui": c.source(log), **upstream.package_source()},
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "model": {"folder": "models/tiny-sd-torch (= models/tiny-sd, random tiny SD 1.5 architecture, seed 0)",
                  "vae_scaling_factor": scaling_factor,
                  "a1111_scale_factor": a.scale_factor, "comfyui_latent_format_scale_factor":
                      c.patcher.model.latent_format.scale_factor,
                  "a1111_sigmas": "tests/fixtures/kdiffusion/model_sigmas_a1111.npy (A1111's own table: checked equal, or within one float32 bit on a CPU whose pow rounds otherwise and then given to its samplers)",
                  "comfyui_sigma_min": float(c.ms.sigma_min), "comfyui_sigma_max": float(c.ms.sigma_max)},
        "dtype": "float32 everywhere, CPU, torch.set_num_threads(1)",
        "schema": SCHEMA,
        "findings": FINDINGS,
        "substitutions": SUBSTITUTIONS,
        "cases": entries,
    }
    (out / "cases.json").write_text(kd._dumps(index) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"  compat_images: {len(entries)} cases; {total / 1e6:.2f} MB in {out}")
    return 0


def _v1_inference(root: Path) -> dict:
    import yaml

    return yaml.safe_load((root / "configs/v1-inference.yaml").read_text(encoding="utf-8"))["model"]["params"]


if __name__ == "__main__":
    upstream.cli(main, __doc__, "../tests/fixtures/compat_images")
