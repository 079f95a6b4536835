# syntax=docker/dockerfile:1
# Warden's image: the release build of `warden` on a distroless runtime (glibc, CA roots, no
# shell, no package manager), running as the unprivileged user 65532.
#
#   docker build -t warden:dev .
#   docker run --read-only -v "$PWD/warden.yaml:/etc/warden/config/warden.yaml:ro" \
#     -v warden-data:/var/lib/warden -p 8080:8080 warden:dev
#
# The Helm chart (charts/warden) mounts the configuration at the same path.
#
# The two base images are named by tag below, which their publishers move to new content (the
# Rust image on each release, distroless on each Debian update). For a build that gives the
# same bytes again, pin both by digest (docs/deploy.md, "Pinning the base images"):
#   docker buildx imagetools inspect docker.io/library/rust:1-bookworm     # Digest: sha256:…
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#   docker build \
#     --build-arg BUILD_IMAGE=docker.io/library/rust:1-bookworm@sha256:<digest> \
#     --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:<digest> .
ARG BUILD_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- build: the official Rust image, pinned by major version; Cargo.lock pins every crate.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
ENV CARGO_INCREMENTAL=0
# The commit `warden --version` and warden_build_info name (.git is not copied):
#   docker build --build-arg WARDEN_BUILD_COMMIT=$(git rev-parse --short HEAD) .
ARG WARDEN_BUILD_COMMIT=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p warden \
 && install -D -m 0755 target/release/warden /out/usr/local/bin/warden \
 && install -d -m 0750 /out/var/lib/warden

# --- runtime: distroless, non-root, no shell.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/usr/local/bin/warden /usr/local/bin/warden
# The Cedar schema and baseline pack: the chart's `policies.source: image`.
COPY policies/schema.cedarschema policies/baseline.cedar /etc/warden/policies/
# The data directory (state, keys, audit log) when no volume is mounted there.
COPY --from=build --chown=65532:65532 /out/var/lib/warden /var/lib/warden
USER 65532:65532
WORKDIR /var/lib/warden
ENV WARDEN_CONFIG=/etc/warden/config/warden.yaml
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve"]
