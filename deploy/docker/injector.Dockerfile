# syntax=docker/dockerfile:1
# sentinel-injector: Kubernetes mutating admission webhook that adds the sidecar to annotated pods.
# Build from the repository root (the build context is the whole source tree):
#   docker build -f deploy/docker/injector.Dockerfile -t ghcr.io/llm-devops/sentinel-injector:dev .

# ---- build: Debian 12 with the -dev packages the project's own installer lists ----
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/local/install-deps.sh deploy/local/install-deps.sh
RUN ./deploy/local/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DSENTINEL_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target sentinel-injector \
 && install -D -m 0755 /build/injector/sentinel-injector /out/usr/local/bin/sentinel-injector \
 && strip /out/usr/local/bin/sentinel-injector \
 && install -d -m 0750 /out/var/lib/sentinel

# ---- runtime: only the shared libraries the program links (checked by integration.deploy_images) ----
FROM debian:12-slim AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="sentinel-injector" \
      org.opencontainers.image.description="LLM-Sentinel Kubernetes mutating admission webhook that adds the sidecar to annotated pods" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgnutls30 libjansson4 libmicrohttpd12 libyaml-0-2 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/sentinel-injector /usr/local/bin/sentinel-injector
COPY --from=build --chown=65532:65532 /out/var/lib/sentinel /var/lib/sentinel

# 8443: HTTPS POST /mutate (AdmissionReview v1), /healthz, /metrics.
# The certificate and key are mounted by the deployment (SENTINEL_TLS_CERT, SENTINEL_TLS_KEY).
EXPOSE 8443
# A numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENV SENTINEL_LOG_FORMAT=json
# Exec form: no shell is started, and SIGTERM reaches the program (clean drain, exit 0).
ENTRYPOINT ["/usr/local/bin/sentinel-injector"]
CMD ["serve"]
