//! The OpenAPI 3 document served at `/api/v1/openapi.json`.
//!
//! Written in code next to the handlers rather than derived by a macro crate: every limit and
//! enum in it comes from the same constants the validation uses (`crate::api`), so the
//! document cannot drift from what the server accepts, and `tests/openapi.rs` checks that every
//! documented path answers on a live server.

use serde_json::{json, Value};

use crate::api::image_modes::{
    DEFAULT_HIRES_SCALE, DEFAULT_HIRES_STRENGTH, DEFAULT_MASK_BLUR, DEFAULT_STRENGTH, MAX_HIRES_SCALE, MAX_IMAGE_ID, MAX_IMAGE_SIDE,
    MAX_MASK_BLUR, MAX_OUTPAINT, MAX_UPLOAD_BYTES,
};
use crate::api::prompt::{DEFAULT_CLIP_SKIP, MAX_CLIP_SKIP};
use crate::api::request::{
    DEFAULT_CFG_SCALE, DEFAULT_SIZE, DEFAULT_STEPS, MAX_BATCH_SIZE, MAX_CFG_SCALE, MAX_PROMPT_CHARS, MAX_SIZE, MAX_STEPS, MIN_SIZE,
};
use crate::api::{PromptSyntax, Sampler, Schedule, Upscaler};
use crate::service::MAX_PAGE;

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn model_name_param() -> Value {
    json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" },
            "description": "may contain `/` (hub models are named org/name)" })
}

fn job_id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

pub fn document() -> Value {
    let size = |name: &str| {
        json!({ "type": "integer", "minimum": MIN_SIZE, "maximum": MAX_SIZE, "multipleOf": 8, "default": DEFAULT_SIZE,
                "description": format!("{name} in pixels, a multiple of 8") })
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Easel API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local Stable Diffusion: submit generations, follow them over Server-Sent Events, fetch the images."
        },
        "paths": {
            "/api/v1/health": { "get": { "summary": "Liveness and readiness", "responses": {
                "200": { "description": "ready" }, "503": { "description": "ONNX Runtime or the models dir is not usable" } } } },
            "/api/v1/config": { "get": { "summary": "The effective settings", "responses": { "200": { "description": "settings" } } } },
            "/api/v1/samplers": { "get": { "summary": "Samplers with A1111's and ComfyUI's names, and the schedules each compat mode runs them with", "responses": { "200": { "description": "`[{name, a1111_name, comfyui_name, default_schedule, schedules, modes: [{compat, default_schedule, schedules}]}]` (default_schedule and schedules: the first mode's)" } } } },
            "/api/v1/schedules": { "get": { "summary": "Schedules with A1111's and ComfyUI's names", "responses": { "200": { "description": "`[{name, a1111_name, comfyui_name}]`" } } } },
            "/api/v1/prompt/tokens": { "get": { "summary": "How a prompt is cut into chunks and tokens, with each token's weight (the prompt box's token counter)",
                "parameters": [
                    { "name": "text", "in": "query", "required": true, "schema": { "type": "string", "maxLength": MAX_PROMPT_CHARS } },
                    { "name": "syntax", "in": "query", "schema": { "type": "string", "enum": PromptSyntax::ALL, "default": PromptSyntax::DEFAULT } },
                    { "name": "model", "in": "query", "schema": { "type": "string" }, "description": "whose tokenizer; the default model when absent" } ],
                "responses": { "200": { "description": "`{syntax, token_count, chunk_size, chunks: [{tokens: [{text, weight}]}], truncated, embeddings}`" },
                    "422": error_response("an unknown syntax or a text over the limit") } } },
            "/api/v1/loras": { "get": { "summary": "LoRA files (models dir loras/ and extra models dirs)",
                "responses": { "200": { "description": "`[{name, size_bytes, read_only, hash}]`: hash is A1111's (LoRA 12 hex digits, VAE 10) once the file has been used" } } } },
            "/api/v1/vaes": { "get": { "summary": "VAE files (models dir vae/ and extra models dirs)",
                "responses": { "200": { "description": "`[{name, size_bytes, read_only, hash}]`: hash is A1111's (LoRA 12 hex digits, VAE 10) once the file has been used" } } } },
            "/api/v1/models/merge": { "post": { "summary": "Merge two checkpoints into checkpoints/NAME.safetensors (A1111's checkpoint merger; answers when written)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false,
                    "required": ["a", "b", "name"], "properties": {
                        "a": { "type": "string", "description": "primary checkpoint (a name from the model list that is a .safetensors file); the output has its keys" },
                        "b": { "type": "string", "description": "secondary checkpoint" },
                        "base": { "type": "string", "description": "C, for add-difference" },
                        "mode": { "type": "string", "enum": crate::api::networks::MERGE_MODES, "default": "weighted-sum" },
                        "alpha": { "type": "number", "minimum": -1, "maximum": 2, "default": 0.3 },
                        "name": { "type": "string", "maxLength": crate::api::networks::MAX_MERGE_NAME },
                        "overwrite": { "type": "boolean", "default": false } } } } } },
                "responses": { "201": { "description": "`{name, size_bytes, tensors, merged, seconds}`" },
                    "422": error_response("a bad field, an unknown checkpoint, an existing name without overwrite, or models that cannot be merged") } } },
            "/api/v1/embeddings": { "get": { "summary": "Textual-inversion embeddings in the models dir's embeddings/ folder (used in prompts by name)",
                "responses": { "200": { "description": "list of `{name, file, bytes}`" } } } },
            "/api/v1/models": { "get": { "summary": "Every model that can be named in a request: folders in the models dir and snapshots in the Hugging Face cache",
                "responses": { "200": { "description": "list", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Model" } } } } } } } },
            "/api/v1/models/{name}": {
                "get": { "summary": "One model, by name, alias (sd15) or org/name@commit", "parameters": [model_name_param()], "responses": {
                    "200": { "description": "the model", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Model" } } } },
                    "404": error_response("no such model") } },
                "delete": { "summary": "Delete a model Easel owns (a models-dir folder, or a hub snapshot Easel pulled)", "parameters": [model_name_param()], "responses": {
                    "200": { "description": "`{name, freed_bytes}`" }, "404": error_response("no such model"),
                    "409": error_response("in the shared hub cache but downloaded by another tool: Easel leaves it alone") } }
            },
            "/api/v1/models/default": { "put": { "summary": "Choose the model used when a request names none (kept across restarts)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ModelChoice" } } } },
                "responses": { "200": { "description": "the new default" }, "404": error_response("no such model"), "422": error_response("no `model` field") } } },
            "/api/v1/models/vae": { "put": { "summary": "Choose the VAE a model uses when a request names none (kept across restarts); vae null = the model's own",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["model"],
                    "properties": { "model": { "type": "string" }, "vae": { "type": "string", "nullable": true, "description": "a name from GET /api/v1/vaes" } } } } } },
                "responses": { "200": { "description": "the model, with its `vae`" }, "404": error_response("no such model or VAE"), "422": error_response("a malformed body") } } },
            "/api/v1/models/aliases": { "get": { "summary": "Short names for known-good SD 1.5 ONNX repositories", "responses": { "200": { "description": "list" } } } },
            "/api/v1/models/pull": { "post": { "summary": "Start pulling a model from the Hugging Face hub (HF_ENDPOINT) in the background",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ModelChoice" } } } },
                "responses": {
                    "202": { "description": "started (or joined: the same repo and revision already being pulled); `Location` is the status URL",
                             "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Pull" } } } },
                    "422": error_response("not an alias or org/name[@revision]") } } },
            "/api/v1/models/pulls": { "get": { "summary": "Recent pulls, newest first", "responses": { "200": { "description": "list of Pull" } } } },
            "/api/v1/models/pulls/{id}": {
                "get": { "summary": "One pull", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "the pull", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Pull" } } } },
                    "404": error_response("no such pull") } },
                "delete": { "summary": "Cancel a running pull (its partial files stay in the cache; pulling again resumes them)", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "cancelled" }, "404": error_response("no such pull"), "409": error_response("already ended") } } },
            "/api/v1/models/pulls/{id}/events": { "get": {
                "summary": "Server-Sent Events: `progress` (at most ten a second), then one `done`, `failed` or `cancelled`; each carries the whole Pull",
                "parameters": [job_id_param()],
                "responses": { "200": { "description": "text/event-stream" }, "404": error_response("no such pull") } } },
            "/api/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/api/v1/generate": {
                "post": {
                    "summary": "Queue a generation: text-to-image; image-to-image with `init_image`; inpainting with `mask`; outpainting with `outpaint`; a hires fix with `hires`",
                    "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 200 },
                                     "description": "A retried submit with the same key returns the first job (200) instead of a new one" }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GenerateRequest" } } } },
                    "responses": {
                        "202": { "description": "queued", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Submitted" } } } },
                        "200": { "description": "an earlier job with the same Idempotency-Key" },
                        "400": error_response("the body is not JSON"),
                        "413": { "description": "the body is larger than 64 KiB" },
                        "415": error_response("the content type is not application/json"),
                        "422": error_response("invalid fields; `fields` names each one")
                    }
                },
                "get": {
                    "summary": "History, newest first",
                    "parameters": [
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 20 } },
                        { "name": "before", "in": "query", "schema": { "type": "integer" }, "description": "`next_before` of the previous page" },
                        { "name": "q", "in": "query", "schema": { "type": "string" }, "description": "only jobs whose prompt contains this text (ASCII case-insensitive)" }
                    ],
                    "responses": { "200": { "description": "a page of jobs" }, "422": error_response("bad limit or cursor") }
                }
            },
            "/api/v1/generate/{id}": {
                "get": { "summary": "One job", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "the job", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } },
                    "404": error_response("no such job") } },
                "delete": { "summary": "Cancel a queued job, or a running one within one step", "parameters": [job_id_param()], "responses": {
                    "200": { "description": "cancelled" }, "202": { "description": "running; stops within one step" },
                    "404": error_response("no such job"), "409": error_response("already finished") } }
            },
            "/api/v1/generate/{id}/events": { "get": {
                "summary": "Server-Sent Events: the current state first, then queued, started, progress, succeeded, failed or cancelled",
                "parameters": [job_id_param()],
                "responses": { "200": { "description": "text/event-stream" }, "404": error_response("no such job") } } },
            "/api/v1/uploads": { "post": {
                "summary": "Upload a picture for init_image or mask: PNG, JPEG or WebP, at most 20 MB and 4096x4096 pixels",
                "requestBody": { "required": true, "content": {
                    "multipart/form-data": { "schema": { "type": "object", "required": ["file"], "properties": { "file": { "type": "string", "format": "binary" } } } },
                    "image/png": { "schema": { "type": "string", "format": "binary" } },
                    "image/jpeg": { "schema": { "type": "string", "format": "binary" } },
                    "image/webp": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": {
                    "201": { "description": "stored (the same picture always gets the same id)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Upload" } } } },
                    "413": error_response(&format!("larger than {} MB", MAX_UPLOAD_BYTES >> 20)),
                    "415": error_response("not multipart/form-data or image/*"),
                    "422": error_response(&format!("`file` is not a PNG, JPEG or WebP picture, or is larger than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"))
                } } },
            "/api/v1/uploads/{id}": { "get": { "summary": "An uploaded picture, as the stored PNG (cached for a year: an id is the hash of its content)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "image/png" }, "404": error_response("no such upload") } } },
            "/api/v1/import": { "post": {
                "summary": "The generation settings a file holds, for a form: an Easel PNG (exact), an A1111 PNG or infotext (compat a1111), a ComfyUI PNG or workflow JSON in the API or UI format (compat comfyui). Nothing is stored or run",
                "requestBody": { "required": true, "content": {
                    "multipart/form-data": { "schema": { "type": "object", "required": ["file"], "properties": { "file": { "type": "string", "format": "binary" } } } },
                    "image/png": { "schema": { "type": "string", "format": "binary" } },
                    "application/json": { "schema": { "type": "object" } },
                    "text/plain": { "schema": { "type": "string" } } } },
                "responses": {
                    "200": { "description": "`{source: easel|a1111|comfyui, settings, notes}`: settings as a job records them; notes name what was left out" },
                    "413": error_response(&format!("larger than {} MB", crate::service::import::MAX_IMPORT_BYTES >> 20)),
                    "415": error_response("not multipart/form-data, image/png, application/json or text/plain"),
                    "422": error_response("`file` holds no settings Easel can use (the message says why: no parameters, nodes Easel does not run, a bad value)")
                } } },
            "/api/v1/images/{id}": { "delete": { "summary": "Delete an image (record and file)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "204": { "description": "deleted" }, "404": error_response("no such image") } } },
            "/metrics": { "get": { "summary": "Prometheus text format: queue depth, jobs by status, step and model-load time histograms, loaded models, running pulls, resident memory",
                "responses": { "200": { "description": "text/plain; version=0.0.4" } } } },
            "/outputs/{path}": { "get": { "summary": "An image file (cached for a year: names are never reused)",
                "parameters": [{ "name": "path", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "image/png" }, "404": { "description": "no such file" } } } }
        },
        "components": { "schemas": {
            "GenerateRequest": {
                "type": "object", "required": ["prompt"], "additionalProperties": false,
                "properties": {
                    "prompt": { "type": "string", "maxLength": MAX_PROMPT_CHARS },
                    "negative_prompt": { "type": "string", "maxLength": MAX_PROMPT_CHARS },
                    "seed": { "type": "integer", "minimum": 0, "maximum": u64::MAX, "description": "random when absent; values above 2^53 need a client that keeps 64-bit integers" },
                    "steps": { "type": "integer", "minimum": 1, "maximum": MAX_STEPS, "default": DEFAULT_STEPS },
                    "cfg_scale": { "type": "number", "minimum": 0, "maximum": MAX_CFG_SCALE, "default": DEFAULT_CFG_SCALE },
                    "width": size("width"),
                    "height": size("height"),
                    "sampler": { "type": "string", "enum": Sampler::ALL.to_vec(), "default": Sampler::DEFAULT },
                    "schedule": { "type": "string", "enum": Schedule::ALL, "description": "default: the sampler's own (compat diffusers: karras for dpmpp_2m; a1111: Automatic; comfyui: simple); compat diffusers runs default and karras, a1111 and comfyui their tool's list (GET /api/v1/samplers)" },
                    "batch_size": { "type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE, "default": 1 },
                    "model": { "type": "string", "description": "a name or alias from GET /api/v1/models; the default model when absent" },
                    "init_image": { "type": "string", "maxLength": MAX_IMAGE_ID, "description": "image-to-image: an upload id from POST /api/v1/uploads or the id of a generated image; sets width and height when they are absent, else it is resized (Lanczos)" },
                    "strength": { "type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1, "default": DEFAULT_STRENGTH, "description": "with init_image: how much is repainted; int(steps x strength) steps run" },
                    "mask": { "type": "string", "maxLength": MAX_IMAGE_ID, "description": "inpainting (needs init_image): an upload id; white repaints, black keeps, grey is binarised at 50%; a picture with transparency is masked by its alpha" },
                    "mask_blur": { "type": "integer", "minimum": 0, "maximum": MAX_MASK_BLUR, "default": DEFAULT_MASK_BLUR, "description": "with mask: Gaussian blur in pixels before binarising; with outpaint: half the width of the soft seam" },
                    "outpaint": { "$ref": "#/components/schemas/Outpaint" },
                    "hires": { "$ref": "#/components/schemas/Hires" },
                    "prompt_syntax": { "type": "string", "enum": PromptSyntax::ALL, "default": PromptSyntax::DEFAULT,
                        "description": "a1111: (word:1.2), [word], BREAK, [a:b:0.5], [a|b], AND, embeddings by file name, any length; comfyui: (word:1.2), embedding:name, any length; plain: literal text cut at 77 tokens (diffusers)" },
                    "clip_skip": { "type": "integer", "minimum": 1, "maximum": MAX_CLIP_SKIP, "default": DEFAULT_CLIP_SKIP,
                        "description": "A1111's CLIP skip: 1 = the text encoder's last layer, 2 = the one before (through the final layer norm)" },
                    "loras": { "type": "array", "maxItems": crate::api::networks::MAX_LORAS,
                        "description": "LoRAs from GET /api/v1/loras, each with its weight (in the a1111 syntax, <lora:NAME:W> tags in the prompt add to these)",
                        "items": { "type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                            "name": { "type": "string", "maxLength": 255, "description": "file name in the loras folders, with or without .safetensors" },
                            "weight": { "type": "number", "minimum": -crate::api::networks::MAX_LORA_WEIGHT, "maximum": crate::api::networks::MAX_LORA_WEIGHT, "default": 1 },
                            "text_encoder_weight": { "type": "number", "minimum": -crate::api::networks::MAX_LORA_WEIGHT, "maximum": crate::api::networks::MAX_LORA_WEIGHT, "description": "the text encoder's weight when different from weight" } } } },
                    "vae": { "type": "string", "maxLength": 255, "description": "a VAE from GET /api/v1/vaes instead of the model's own; automatic = the model's" },
                    "compat": { "type": "string", "enum": crate::api::Compat::ALL.map(crate::api::Compat::name), "default": crate::api::Compat::default().name(),
                        "description": "whose numbers the generation follows (noise, samplers, schedules, 8-bit pixels): diffusers (one torch CPU generator, diffusers' schedulers), a1111 (image i seeded with seed+i, k-diffusion as A1111 runs it), comfyui (one CPU draw for the batch, ComfyUI's KSampler); a1111 and comfyui: text-to-image only so far" },
                    "randn_source": { "type": "string", "enum": crate::api::RandnSource::ALL.map(crate::api::RandnSource::name), "description": "compat a1111: nv (A1111's GPU noise, its default) or cpu" },
                    "subseed": { "type": "integer", "minimum": 0, "description": "compat a1111: variation seed (image i uses subseed+i); random when only a strength is given" },
                    "subseed_strength": { "type": "number", "minimum": 0, "maximum": 1, "default": 0, "description": "compat a1111: 0 = the seed's noise, 1 = the variation seed's" },
                    "seed_resize_from_w": { "type": "integer", "minimum": 0, "maximum": crate::api::request::MAX_SIZE, "description": "compat a1111: resize seed from this width (0 = off)" },
                    "seed_resize_from_h": { "type": "integer", "minimum": 0, "maximum": crate::api::request::MAX_SIZE, "description": "compat a1111: resize seed from this height (0 = off)" },
                    "eta_noise_seed_delta": { "type": "integer", "minimum": 0, "description": "compat a1111: ENSD, the sampler's noise seeded with seed + this" },
                    "png_text": { "type": "object", "additionalProperties": { "type": "string" }, "maxProperties": crate::api::request::MAX_PNG_TEXT_CHUNKS,
                        "description": "extra PNG text chunks written into every image (keyword -> text, e.g. ComfyUI's workflow); without them Easel writes a ComfyUI `prompt` graph of the settings" },
                    "vae_tiling": { "type": "string", "enum": crate::api::VaeTiling::ALL.map(crate::api::VaeTiling::name), "default": crate::api::VaeTiling::default().name(),
                        "description": "the VAE over large pictures in overlapping tiles, as diffusers' enable_tiling() (memory of one 512x512 tile whatever the size; the picture differs slightly from a whole decode): auto tiles above 512x512 in compat diffusers and never in a1111 and comfyui (their tools decode whole); on tiles whenever the picture is larger than a tile; off never" },
                    "sampling_range": { "$ref": "#/components/schemas/SamplingRange" },
                    "stages": { "type": "array", "maxItems": crate::api::stages::MAX_STAGES, "items": { "$ref": "#/components/schemas/Stage" },
                        "description": "compat comfyui, with sampling_range: the later KSamplerAdvanced nodes of a chain, each run over the latents the one before left (with their leftover noise when it kept it), the same model, its own prompts if given; no mask" },
                    "masked_content": { "type": "string", "enum": crate::api::image_modes::MaskedContent::ALL.map(crate::api::image_modes::MaskedContent::name), "default": "original",
                        "description": "with mask: what the masked part of the init image holds when it is encoded; grey (compat comfyui only) is ComfyUI's VAEEncodeForInpaint: mid grey under the mask rounded to 0 or 1; fill, latent_noise and latent_nothing (compat a1111 only) are A1111's: the kept part blurred into the hole, then for the latent ones noise (each image's seed's first draw) or zeros under the latent mask" },
                    "inpaint_area": { "type": "string", "enum": crate::api::image_modes::InpaintArea::ALL.map(crate::api::image_modes::InpaintArea::name), "default": "whole",
                        "description": "compat a1111, with mask: whole inpaints the picture at width x height; only_masked (A1111's Only masked) cuts out the mask's box (grown by inpaint_padding, then to the aspect of width x height), runs it at width x height and pastes the result back: the images keep the init image's size" },
                    "inpaint_padding": { "type": "integer", "minimum": 0, "maximum": crate::api::image_modes::MAX_INPAINT_PADDING, "default": crate::api::image_modes::DEFAULT_INPAINT_PADDING,
                        "description": "with inpaint_area only_masked: pixels added around the mask's box (A1111's Masked area padding)" },
                    "mask_grow": { "type": "integer", "minimum": 0, "maximum": crate::api::image_modes::MAX_MASK_GROW, "default": 0,
                        "description": "with masked_content grey: pixels the mask grows by (a box) before it masks the latents, ComfyUI's grow_mask_by" },
                    "batch_index": { "type": "integer", "minimum": 0, "maximum": crate::api::request::MAX_BATCH_INDEX, "default": 0,
                        "description": "compat comfyui, text-to-image: the images from this index on of a larger batch (ComfyUI's LatentFromBatch): their start noise" },
                    "combined_prompts": { "type": "array", "items": { "type": "string" }, "maxItems": crate::api::request::MAX_COMBINED_PROMPTS,
                        "description": "compat and prompt_syntax comfyui: more positive prompts combined with prompt (ComfyUI's ConditioningCombine: each runs through the UNet, the predictions are averaged before guidance)" },
                    "conditioning": { "$ref": "#/components/schemas/Conditioning" }
                }
            },
            "Conditioning": { "type": "object", "additionalProperties": false, "required": ["positive"],
                "description": "compat and prompt_syntax comfyui: the lists ComfyUI's Conditioning nodes build (Combine, Concat, Average, SetArea), which the UNet sees instead of prompt and negative_prompt (those stay the images' captions). Every entry runs through the UNet (an entry with an area on that crop of the latents); each side's predictions are averaged per latent pixel weighted by strength and the area's feathered edges; an area on one side gets a same-area entry on the other, as ComfyUI adds it. Not with combined_prompts",
                "properties": {
                    "positive": { "type": "array", "minItems": 1, "maxItems": crate::api::conditioning::MAX_CONDITIONING_ENTRIES, "items": { "$ref": "#/components/schemas/ConditioningEntry" } },
                    "negative": { "type": "array", "maxItems": crate::api::conditioning::MAX_CONDITIONING_ENTRIES, "items": { "$ref": "#/components/schemas/ConditioningEntry" },
                        "description": "empty or absent: negative_prompt alone" }
                }
            },
            "ConditioningEntry": { "type": "object", "additionalProperties": false, "required": ["encoding"],
                "properties": {
                    "encoding": { "$ref": "#/components/schemas/TextExpr" },
                    "strength": { "type": "number", "minimum": 0, "maximum": crate::api::conditioning::MAX_AREA_STRENGTH, "default": 1,
                        "description": "the entry's weight in its side's average (ConditioningSetArea's strength)" },
                    "area": { "type": "object", "additionalProperties": false, "required": ["x", "y", "width", "height"],
                        "description": "the part of the picture this entry conditions, in pixels (ComfyUI divides each by 8); it must start inside the first pass's picture and is cut at its edge",
                        "properties": {
                            "x": { "type": "integer", "minimum": 0, "maximum": crate::api::conditioning::MAX_AREA_PIXELS },
                            "y": { "type": "integer", "minimum": 0, "maximum": crate::api::conditioning::MAX_AREA_PIXELS },
                            "width": { "type": "integer", "minimum": crate::api::conditioning::MIN_AREA_SIDE, "maximum": crate::api::conditioning::MAX_AREA_PIXELS },
                            "height": { "type": "integer", "minimum": crate::api::conditioning::MIN_AREA_SIDE, "maximum": crate::api::conditioning::MAX_AREA_PIXELS }
                        } }
                }
            },
            "TextExpr": {
                "description": "a prompt's encoding ({\"text\": ...}, ComfyUI's syntax), ConditioningConcat of two ({\"concat\": {\"to\", \"from\"}}: from's tokens after to's) or ConditioningAverage ({\"average\": {\"to\", \"from\", \"to_strength\"}}: to·s + from·(1 − s) over to's tokens, from cut or filled with zeros); at most 16 prompts in the whole conditioning",
                "oneOf": [
                    { "type": "object", "additionalProperties": false, "required": ["text"], "properties": { "text": { "type": "string" } } },
                    { "type": "object", "additionalProperties": false, "required": ["concat"], "properties": { "concat": { "type": "object", "required": ["to", "from"],
                        "properties": { "to": { "$ref": "#/components/schemas/TextExpr" }, "from": { "$ref": "#/components/schemas/TextExpr" } } } } },
                    { "type": "object", "additionalProperties": false, "required": ["average"], "properties": { "average": { "type": "object", "required": ["to", "from", "to_strength"],
                        "properties": { "to": { "$ref": "#/components/schemas/TextExpr" }, "from": { "$ref": "#/components/schemas/TextExpr" },
                            "to_strength": { "type": "number", "minimum": 0, "maximum": 1 } } } } }
                ]
            },
            "SamplingRange": { "type": "object", "additionalProperties": false,
                "description": "compat comfyui only: ComfyUI's KSamplerAdvanced window. Of the steps-step schedule, run the steps from start_at_step to end_at_step; over an init image send strength 1 (the node has no denoise)",
                "properties": {
                    "start_at_step": { "type": "integer", "minimum": 0, "maximum": crate::api::sampling_range::MAX_RANGE_STEP, "default": 0,
                        "description": "the first step to run; it must leave at least one step before end_at_step and steps" },
                    "end_at_step": { "type": "integer", "minimum": 0, "maximum": crate::api::sampling_range::MAX_RANGE_STEP, "default": crate::api::sampling_range::MAX_RANGE_STEP,
                        "description": "the step to stop at (10000: the end)" },
                    "add_noise": { "type": "boolean", "default": true, "description": "start from fresh noise (false: from the latents as they are, e.g. a second pass)" },
                    "return_with_leftover_noise": { "type": "boolean", "default": false,
                        "description": "when stopping before the end, keep the noise left at end_at_step (false: the last step goes to sigma 0)" }
                }
            },
            "Stage": { "type": "object", "additionalProperties": false,
                "description": "one later KSamplerAdvanced of a chain; absent members are the request's",
                "properties": {
                    "sampling_range": { "$ref": "#/components/schemas/SamplingRange" },
                    "seed": { "type": "integer", "minimum": 0, "description": "the stage's seed (its fresh noise with add_noise, its samplers' step noise)" },
                    "steps": { "type": "integer", "minimum": 1, "maximum": crate::api::request::MAX_STEPS, "description": "the steps of the schedule the window cuts" },
                    "cfg_scale": { "type": "number", "minimum": 0, "maximum": crate::api::request::MAX_CFG_SCALE },
                    "sampler": { "type": "string", "description": "a sampler compat comfyui runs (GET /api/v1/samplers)" },
                    "schedule": { "type": "string", "description": "a compat comfyui schedule" },
                    "prompt": { "type": "string", "maxLength": crate::api::request::MAX_PROMPT_CHARS,
                        "description": "the stage's own positive prompt (a prompt switch; not with combined_prompts or conditioning)" },
                    "negative_prompt": { "type": "string", "maxLength": crate::api::request::MAX_PROMPT_CHARS }
                }
            },
            "Outpaint": { "type": "object", "additionalProperties": false,
                "description": "extend init_image by these pixels per side and paint the new area; width and height are the picture's size before extension",
                "properties": {
                    "left": { "type": "integer", "minimum": 0, "maximum": MAX_OUTPAINT, "multipleOf": 8, "default": 0 },
                    "right": { "type": "integer", "minimum": 0, "maximum": MAX_OUTPAINT, "multipleOf": 8, "default": 0 },
                    "top": { "type": "integer", "minimum": 0, "maximum": MAX_OUTPAINT, "multipleOf": 8, "default": 0 },
                    "bottom": { "type": "integer", "minimum": 0, "maximum": MAX_OUTPAINT, "multipleOf": 8, "default": 0 } } },
            "Hires": { "type": "object", "additionalProperties": false,
                "description": "text-to-image only: upscale the result and refine it with a second, image-to-image pass from the same seed (compat comfyui: ComfyUI's two-pass graph, KSampler -> LatentUpscale -> KSampler, the second from seed)",
                "properties": {
                    "scale": { "type": "number", "exclusiveMinimum": true, "minimum": 1, "maximum": MAX_HIRES_SCALE, "default": DEFAULT_HIRES_SCALE, "description": "each side times this, rounded down to a multiple of 8" },
                    "strength": { "type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1, "default": DEFAULT_HIRES_STRENGTH },
                    "steps": { "type": "integer", "minimum": 0, "maximum": MAX_STEPS, "default": 0, "description": "0 = the same steps as the first pass" },
                    "upscaler": { "type": "string", "enum": Upscaler::ALL.map(Upscaler::name), "default": Upscaler::DEFAULT.name(),
                        "description": "latent: the latents resized bilinearly (torch's interpolate); latent-nearest-exact, latent-bicubic, latent-nearest (legacy nearest), latent-area: with torch's other modes; lanczos: the picture resized and encoded again. compat a1111 takes A1111's latent modes (not area), compat comfyui LatentUpscale's (not legacy nearest); lanczos runs in compat diffusers only" },
                    "seed": { "type": "integer", "minimum": 0, "description": "compat comfyui: the second KSampler's seed [default: the request's]" } } },
            "Upload": { "type": "object", "properties": {
                "id": { "type": "string", "description": "pass as init_image or mask" }, "width": { "type": "integer" }, "height": { "type": "integer" } } },
            "Submitted": { "type": "object", "properties": {
                "id": { "type": "string" }, "status": { "type": "string" }, "position": { "type": "integer", "nullable": true } } },
            "Job": { "type": "object", "properties": {
                "id": { "type": "string" },
                "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
                "position": { "type": "integer", "nullable": true },
                "progress": { "type": "object", "properties": { "step": { "type": "integer" }, "total": { "type": "integer" }, "eta_seconds": { "type": "number", "nullable": true } } },
                "request": { "type": "object", "description": "the settings the job runs with, every default filled in and the seed chosen" },
                "images": { "type": "array", "items": { "type": "object", "properties": {
                    "id": { "type": "string" }, "url": { "type": "string" }, "seed": { "type": "integer" },
                    "width": { "type": "integer" }, "height": { "type": "integer" }, "batch_index": { "type": "integer" },
                    "infotext": { "type": "string", "description": "the A1111 parameters text embedded in the PNG" } } } },
                "error": { "type": "string", "nullable": true }
            } },
            "ModelChoice": { "type": "object", "required": ["model"], "properties": {
                "model": { "type": "string", "description": "a model name, an alias (sd15, sd15-fp16), or for pulls org/name[@revision]" } } },
            "Model": { "type": "object", "properties": {
                "name": { "type": "string" }, "path": { "type": "string" },
                "location": { "type": "string", "enum": ["models_dir", "hub_cache", "extra_dir"] },
                "precision": { "type": "string", "enum": ["float32", "float16", "bfloat16", "int8", "unknown"] },
                "source": { "type": "string" }, "repo_id": { "type": "string", "nullable": true }, "commit": { "type": "string", "nullable": true },
                "aliases": { "type": "array", "items": { "type": "string" } },
                "size_bytes": { "type": "integer" }, "is_default": { "type": "boolean" }, "removable": { "type": "boolean" },
                "vae": { "type": "string", "nullable": true, "description": "the VAE file it uses when a request names none (null: its own)" },
                "hash": { "type": "string", "nullable": true, "description": "A1111's short hash (10 hex digits) once known: computed at the model's first load, then cached" } } },
            "Pull": { "type": "object", "properties": {
                "id": { "type": "string" }, "repo_id": { "type": "string" }, "revision": { "type": "string" }, "commit": { "type": "string", "nullable": true },
                "state": { "type": "string", "enum": ["resolving", "downloading", "done", "failed", "cancelled"] },
                "files": { "type": "array", "items": { "type": "object", "properties": {
                    "path": { "type": "string" }, "size": { "type": "integer" }, "done": { "type": "integer" },
                    "state": { "type": "string", "enum": ["waiting", "downloading", "verifying", "cached", "done", "failed"] } } } },
                "total_bytes": { "type": "integer" }, "done_bytes": { "type": "integer" }, "downloaded_bytes": { "type": "integer" },
                "model": { "type": "string", "nullable": true, "description": "the name to generate with, once done" },
                "error": { "type": "string", "nullable": true } } },
            "Error": { "type": "object", "required": ["error"], "properties": {
                "error": { "type": "string" },
                "fields": { "type": "array", "items": { "type": "object", "properties": { "field": { "type": "string" }, "message": { "type": "string" } } } }
            } }
        } }
    })
}
