# rtconfig: one image for every role (`rtconfig admin`, `rtconfig sidecar`, `rtconfig dev`, the
# `user`/`token` commands and the `health` probe client).
#
#   docker build -t rtconfig .                                # the full multi-stage build
#   docker build --build-arg GIT_REVISION="$(git rev-parse --short=12 HEAD)" -t rtconfig .
#
# Stages: `build` compiles the release binary on the official Rust image (the crate registry and
# target dir are BuildKit cache mounts, so a rebuild recompiles only what changed); `runtime` is
# Debian slim with that one binary, the demo schema at /etc/rtconfig/schema, user 65532, and
# nothing else (no shell tools beyond Debian's base, no curl: the HEALTHCHECK is `rtconfig health`).
# The runtime stage needs no writable path but its volumes: /var/lib/rtconfig (the embedded
# ledger of `dev`/`admin --data-dir`, and the sidecar's disk snapshot), so it runs with a
# read-only root filesystem.
#
# A machine with a binary already built (CI, the Docker tests) builds only the runtime stage
# from it: BINARY=prebuilt takes `rtconfig` from the root of the build context (a directory
# holding that binary and config/), and the Rust stage is never run:
#   docker build --build-arg BINARY=prebuilt -f Dockerfile -t rtconfig DIR
# (BuildKit's `--build-context build=DIR` would do the same, but needs Docker 23 or later.)

ARG RUST_VERSION=1.92
ARG DEBIAN_RELEASE=bookworm
# Where the binary comes from: `build` (compile it here) or `prebuilt` (the context's ./rtconfig).
ARG BINARY=build

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG GIT_REVISION=unknown
WORKDIR /src
# The sources without .git (see .dockerignore): build.rs takes the revision from here.
ENV RTCONFIG_GIT_REVISION=${GIT_REVISION}
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rtconfig \
    && cp target/release/rtconfig /rtconfig

FROM scratch AS prebuilt
COPY rtconfig /rtconfig

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG GIT_REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="rtconfig" \
      org.opencontainers.image.description="Realtime configuration: per-pod sidecar read API, admin write API with a change ledger" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/rtconfig/rtconfig" \
      org.opencontainers.image.documentation="https://github.com/rtconfig/rtconfig#run-with-docker-compose" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"
# The non-root user of distroless images (65532), and the one writable directory.
RUN groupadd --gid 65532 rtconfig \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rtconfig \
    && mkdir -p /var/lib/rtconfig \
    && chown 65532:65532 /var/lib/rtconfig \
    && chmod 0700 /var/lib/rtconfig
COPY --from=binary /rtconfig /usr/local/bin/rtconfig
# The schema dir (namespace files); mount your own over it (a ConfigMap in Kubernetes).
COPY config/ /etc/rtconfig/schema/
ENV RTCONFIG_SCHEMA_DIR=/etc/rtconfig/schema \
    RTCONFIG_LOG_FORMAT=json
USER 65532:65532
WORKDIR /var/lib/rtconfig
VOLUME ["/var/lib/rtconfig"]
# 7070 sidecar read API (loopback inside the pod), 7071 sidecar probes and metrics, 8080 admin.
EXPOSE 7070 7071 8080
# The sidecar's readiness; the admin's compose service and Kubernetes probes override it
# (`rtconfig health http://127.0.0.1:8080/readyz`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["rtconfig", "health", "--timeout", "2", "http://127.0.0.1:7071/readyz"]
ENTRYPOINT ["rtconfig"]
CMD ["--help"]
