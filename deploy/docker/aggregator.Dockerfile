# syntax=docker/dockerfile:1
# sentinel-aggregator: central service: global baselines, detectors, alerts, REST API.
# Build from the repository root (the build context is the whole source tree):
#   docker build -f deploy/docker/aggregator.Dockerfile -t ghcr.io/llm-devops/sentinel-aggregator:dev .

# ---- build: Debian 12 with the -dev packages the project's own installer lists ----
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY deploy/local/install-deps.sh deploy/local/install-deps.sh
# npm: the build installs the dashboard's charting library (uPlot) from aggregator/web's lock.
RUN ./deploy/local/install-deps.sh --build-only \
 && apt-get update -qq && apt-get install -y -qq --no-install-recommends npm \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DSENTINEL_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target sentinel-aggregator \
 && install -D -m 0755 /build/aggregator/sentinel-aggregator /out/usr/local/bin/sentinel-aggregator \
 && strip /out/usr/local/bin/sentinel-aggregator \
 && install -d -m 0750 /out/var/lib/sentinel

# ---- runtime: only the shared libraries the program links (checked by integration.deploy_images),
# plus the store, the alert sinks (libcurl, librabbitmq, hiredis), the REST API and the live feed ----
FROM debian:12-slim AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="sentinel-aggregator" \
      org.opencontainers.image.description="LLM-Sentinel central service: global baselines, detectors, alerts, REST API" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libatomic1 libcurl4 libgrpc29 libhiredis0.14 libjansson4 libmicrohttpd12 libprotobuf-c1 librabbitmq4 libsqlite3-0 libuv1 libwslay1 libyaml-0-2 libzstd1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/sentinel-aggregator /usr/local/bin/sentinel-aggregator
COPY --from=build --chown=65532:65532 /out/var/lib/sentinel /var/lib/sentinel
# Embedded state (SENTINEL_DATA_DIR).
VOLUME ["/var/lib/sentinel"]
# 9090: sidecar ingest (gRPC sentinel.v1.Aggregator); 8080: REST API, /metrics, dashboard
EXPOSE 9090 8080
# A numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENV SENTINEL_LOG_FORMAT=json
# Exec form: no shell is started, and SIGTERM reaches the program (clean drain, exit 0).
ENTRYPOINT ["/usr/local/bin/sentinel-aggregator"]

