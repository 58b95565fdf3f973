"""Timings of the reference implementations, for `scripts/bench.sh` to set beside `easel bench`.

    python -m tooling.bench_reference {onnx|torch} MODEL_DIR --size 512 --steps 4 --threads 2

`onnx`: diffusers' OnnxStableDiffusionPipeline on the ONNX folder (the same onnxruntime version
Easel loads); `torch`: diffusers' StableDiffusionPipeline (float32, CPU) on the torch folder. Both
keep the model's own PNDM scheduler (N + 1 UNet calls); `scripts/bench.sh` runs `easel bench
--sampler pndm` to match. (diffusers' ONNX pipeline cannot run Euler: it multiplies numpy latents
by Euler's tensor-valued init_noise_sigma.) Each stage is timed by wrapping the
component's call; peak resident memory is the process's ru_maxrss. Prints one JSON object.
"""
import argparse
import json
import resource
import time


def timed(record, key, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        record.setdefault(key, []).append(time.perf_counter() - t)
        return out
    return wrapper


def run_onnx(model, size, steps, threads):
    import onnxruntime as ort
    from diffusers import OnnxStableDiffusionPipeline

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t = time.perf_counter()
    pipe = OnnxStableDiffusionPipeline.from_pretrained(model, provider="CPUExecutionProvider", sess_options=so)
    load = time.perf_counter() - t
    pipe.set_progress_bar_config(disable=True)
    rec = {}
    # diffusers' ONNX pipeline always feeds int32 ids (the legacy exporter's type); optimum-style
    # exports such as `sdtool random` take int64, so cast to what the graph declares.
    encoder = pipe.text_encoder.model
    ids_type = encoder.get_inputs()[0].type
    original_run = encoder.run

    def run_with_declared_ids(names, feed, *rest):
        if ids_type == "tensor(int64)":
            feed = {k: v.astype("int64") if k == "input_ids" else v for k, v in feed.items()}
        return original_run(names, feed, *rest)

    pipe.text_encoder.model.run = timed(rec, "text", run_with_declared_ids)
    # It also feeds the timestep as shape [1]; optimum-style UNets declare a scalar.
    unet = pipe.unet.model
    scalar_timestep = len(unet.get_inputs()[1].shape) == 0
    unet_run = unet.run

    def run_with_declared_timestep(names, feed, *rest):
        if scalar_timestep:
            feed = {k: v.reshape(()) if k == "timestep" else v for k, v in feed.items()}
        return unet_run(names, feed, *rest)

    pipe.unet.model.run = timed(rec, "unet", run_with_declared_timestep)
    pipe.vae_decoder.model.run = timed(rec, "vae", pipe.vae_decoder.model.run)
    t = time.perf_counter()
    pipe("a photograph of an astronaut riding a horse", height=size, width=size, num_inference_steps=steps, guidance_scale=7.0)
    return load, time.perf_counter() - t, rec


def run_torch(model, size, steps, threads):
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    t = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False)
    load = time.perf_counter() - t
    pipe.set_progress_bar_config(disable=True)
    rec = {}
    pipe.text_encoder.forward = timed(rec, "text", pipe.text_encoder.forward)
    pipe.unet.forward = timed(rec, "unet", pipe.unet.forward)
    pipe.vae.decode = timed(rec, "vae", pipe.vae.decode)
    t = time.perf_counter()
    with torch.inference_mode():
        pipe("a photograph of an astronaut riding a horse", height=size, width=size, num_inference_steps=steps,
             guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(0))
    return load, time.perf_counter() - t, rec


def main():
    p = argparse.ArgumentParser()
    p.add_argument("impl", choices=["onnx", "torch"])
    p.add_argument("model")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    load, total, rec = (run_onnx if a.impl == "onnx" else run_torch)(a.model, a.size, a.steps, a.threads)
    unet = rec.get("unet", [])
    print(json.dumps({
        "impl": f"diffusers-{a.impl}", "size": a.size, "steps": a.steps, "threads": a.threads, "load_s": load,
        "text_encoding_s": sum(rec.get("text", [])), "unet_step_s": sum(unet) / max(len(unet), 1),
        "vae_decode_s": sum(rec.get("vae", [])), "total_s": total,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }))


if __name__ == "__main__":
    main()
