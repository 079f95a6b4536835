# syntax=docker/dockerfile:1
# Warden's image: the release build of `warden` on a distroless runtime (glibc, CA roots, no
# shell, no package manager), running as the unprivileged user 65532.
#
#   docker build -t warden:dev .
#   docker run --read-only -v "$PWD/warden.yaml:/etc/warden/config/warden.yaml:ro" \
#     -v warden-data:/var/lib/warden -p 8080:8080 warden:dev
#
# The Helm chart (charts/warden) mounts the configuration at the same path.

# --- build: the official Rust image, pinned by major version; Cargo.lock pins every crate.
FROM docker.io/library/rust:1-bookworm AS build
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
FROM gcr.io/distroless/cc-debian12:nonroot
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
