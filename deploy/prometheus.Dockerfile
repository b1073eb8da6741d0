# Prometheus for the compose profile "monitoring" (deploy/compose.yaml), FROM scratch: nothing is pulled,
# so it builds offline, like the node's image (deploy/Dockerfile).
#
# Do not run `docker build` on deploy/ directly: deploy/build-image.sh --prometheus prepares the build
# context (rootfs/ holding the Debian package's /usr/bin/prometheus, exactly the shared libraries `ldd`
# reports for it including the dynamic loader, the web UI's files from /usr/share/prometheus/web, a few
# /etc files, and deploy/prometheus.yml as /etc/prometheus/prometheus.yml; owned/ holding /prometheus, the
# storage directory) and then builds this file with it:
#
#     deploy/build-image.sh --prometheus     # -> chatmesh-prometheus:latest
#
# It runs as nobody (65534), keeps its time series in /prometheus and serves its UI and API on 9090.
FROM scratch

COPY rootfs/ /
COPY --chown=65534:65534 owned/ /

USER 65534:65534
WORKDIR /prometheus

EXPOSE 9090/tcp

LABEL org.opencontainers.image.title="chatmesh-prometheus" \
      org.opencontainers.image.description="Prometheus (Debian's build) for ChatMesh's compose profile monitoring"

ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
