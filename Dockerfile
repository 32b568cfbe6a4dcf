# weir in a container: built in the Rust image, run as a non-root user in a minimal image.
#   docker build --build-arg RUNTIME=tokio -t weir .      (RUNTIME: tokio, smol, std, uring)
#   docker run -p 8080:8080 weir
# weir-uring needs io_uring, which the default seccomp profile of Docker refuses; it then
# exits 1 with the reason (run weir-tokio, or a profile that allows io_uring_setup).

# Base images by tag: pin them by digest in your registry mirror (`FROM image@sha256:…`);
# this repository cannot look digests up for you.
FROM rust:1-bookworm AS build
ARG RUNTIME=tokio
WORKDIR /src
COPY . .
# BuildKit caches the registry and the target directory between builds: a source change
# rebuilds weir's crates, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p "weir-${RUNTIME}" \
    && cp "target/release/weir-${RUNTIME}" /weir

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /weir /usr/local/bin/weir
ENV SERVER_PORT=0.0.0.0:8080 \
    ENVIRONMENT=production
EXPOSE 8080
USER 65532:65532
# The binary probes its own /livez: no shell or curl in a distroless image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/weir", "--health-check"]
# SIGTERM starts the graceful drain (SHUTDOWN_DELAY, then SHUTDOWN_TIMEOUT).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/weir"]
