# Easel in a container: build stage (Rust, cargo-leptos, wasm) and a slim runtime stage with the
# binary, the web UI, ONNX Runtime and the bundled tiny model.
#
#   docker build -t easel .            (or: docker compose up --build, see compose.yaml)
#   docker run -p 3000:3000 -e EASEL_API_TOKEN=change-me -v easel-data:/data easel
#
# The server binds 0.0.0.0 inside the container, so it refuses to start without
# EASEL_API_TOKEN. Clients send `Authorization: Bearer <token>`; a browser opens /?token=<token> once.
#
# Debian packages are not version-pinned (DL3008): bookworm's archive drops old versions, so
# pins would break the build; the Rust, Node and ONNX Runtime pieces are pinned by setup.sh.

FROM rust:1.95-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain pieces first, so they stay cached while the sources change.
COPY scripts/setup.sh scripts/setup-onnxruntime.sh scripts/
COPY Cargo.toml Cargo.lock ./
RUN scripts/setup.sh run
COPY . .
RUN PATH="/root/.cache/easel/tools/node_modules/.bin:$PATH" cargo leptos build --release \
 && mkdir -p /out/lib /out/models \
 && cp target/release/easel /out/lib/ \
 && cp -r target/site /out/lib/site \
 && cp /root/.cache/easel/onnxruntime/libonnxruntime.so.* /root/.cache/easel/onnxruntime/libonnxruntime_providers_shared.so /out/lib/ \
 && cp -r models/tiny-sd /out/models/tiny-sd

FROM debian:bookworm-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 easel \
 && mkdir -p /data /hf-cache \
 && chown easel:easel /data /hf-cache
COPY --from=build /out/lib /opt/easel
COPY --from=build --chown=easel:easel /out/models /opt/easel/models
RUN ln -s /opt/easel/easel /usr/local/bin/easel
USER 10001
ENV EASEL_HOST=0.0.0.0 \
    EASEL_PORT=3000 \
    EASEL_DATA_DIR=/data \
    EASEL_MODELS_DIR=/data/models \
    HF_HUB_CACHE=/hf-cache
WORKDIR /data
EXPOSE 3000
VOLUME ["/data", "/hf-cache"]
# Seed the tiny model into the (possibly empty) data volume, then serve.
CMD ["sh", "-c", "mkdir -p /data/models && [ -d /data/models/tiny-sd ] || cp -r /opt/easel/models/tiny-sd /data/models/; exec easel serve"]
# /api/v1/health needs no token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["curl", "-fsS", "http://127.0.0.1:3000/api/v1/health"]
