# syntax=docker/dockerfile:1
# sentinel-sidecar: per-pod OTLP receiver: LLM facts, local detection, batches to the aggregator.
# Build from the repository root (the build context is the whole source tree):
#   docker build -f deploy/docker/sidecar.Dockerfile -t ghcr.io/llm-devops/sentinel-sidecar:dev .

# ---- build: Debian 12 with the -dev packages the project's own installer lists ----
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/local/install-deps.sh deploy/local/install-deps.sh
RUN ./deploy/local/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DSENTINEL_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target sentinel-sidecar \
 && install -D -m 0755 /build/sidecar/sentinel-sidecar /out/usr/local/bin/sentinel-sidecar \
 && strip /out/usr/local/bin/sentinel-sidecar \
 && install -d -m 0750 /out/var/lib/sentinel

# ---- runtime: only the shared libraries the program links (checked by integration.deploy_images) ----
# The sidecar is linked from its libraries' static archives (SENTINEL_SIDECAR_STATIC, the default):
# it needs libuv, and libp11-kit and libunistring for GnuTLS; libcurl4 is loaded (dlopen) only for
# an HTTP tee, ca-certificates for an https one.
FROM debian:12-slim AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="sentinel-sidecar" \
      org.opencontainers.image.description="LLM-Sentinel per-pod OTLP receiver: LLM facts, local detection, batches to the aggregator" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libp11-kit0 libunistring2 libuv1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/sentinel-sidecar /usr/local/bin/sentinel-sidecar
COPY --from=build --chown=65532:65532 /out/var/lib/sentinel /var/lib/sentinel
# The spool lives here; in Kubernetes an emptyDir is mounted over it.
VOLUME ["/var/lib/sentinel"]
# 4317/4318: OTLP gRPC/HTTP (bound to 127.0.0.1 by default: only the pod's own containers reach them)
# 8081: /healthz, /readyz, /metrics
EXPOSE 4317 4318 8081
# A numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENV SENTINEL_LOG_FORMAT=json
# Exec form: no shell is started, and SIGTERM reaches the program (clean drain, exit 0).
ENTRYPOINT ["/usr/local/bin/sentinel-sidecar"]

