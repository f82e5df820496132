# kserve-torchserve: the real TorchServe (Java 17 frontend + Python workers) behind the
# real KServe model server, as the container KServe's controller runs.
#
#   docker build -t kserve-torchserve:latest .                                   # CPU torch
#   docker build --build-arg TORCH_VARIANT=cu121 -t kserve-torchserve:latest-gpu .  # CUDA torch
#
# KServe's controller appends "-gpu" to the runtime image's tag when a predictor asks for
# GPUs (config/runtimes/ carry its server-type annotation) and sets no runtimeVersion, so
# push both tags. A GPU pod also needs TS_NUMBER_OF_GPU (TorchServe's
# number_of_gpu; the runtime's default is 0).
#
# Build args:
#   BASE_IMAGE      docker.io/library/python:3.11-slim-bookworm (fully qualified: podman
#                   too). Any Debian bookworm image with python3 and its venv module
#                   (Debian's own python3 + python3-venv works too); the runtime stage
#                   installs Debian's openjdk-17-jre-headless and tini.
#   TORCH_VARIANT   cpu (default) or a CUDA build of download.pytorch.org: cu118, cu121,
#                   cu124, cu126, ... (CUDA wheels bring their CUDA libraries; the driver
#                   comes from the node through the NVIDIA container toolkit).
#   TORCH_INDEX     where torch and torchvision come from; default
#                   https://download.pytorch.org/whl/${TORCH_VARIANT}.
#   TORCH_PACKAGES  "torch torchvision" (pin both together, e.g.
#                   "torch==2.6.0 torchvision==0.21.0"); installed first, from TORCH_INDEX
#                   (PyPI's x86_64 torch is the CUDA build), and kept by the package's install.
#   TORCH_FIND_LINKS  optional directory (or URL) of torch wheels, e.g. mounted into the build.
#   PIP_*           pip settings for the build stage only (mirror, CA bundle, constraints,
#                   find-links); they do not reach the final image. scripts/test-image.sh
#                   forwards the build machine's pip configuration this way.
#
# At run time (the image runs as uid 1000; any uid works, nothing under / is written):
#   args      KServe's: --model_name=NAME --storage_uri=/mnt/models --http_port=8080
#             --grpc_port=8081 (python -m kserve_torchserve --help lists all)
#   /tmp      must be writable: TorchServe's work dir (model store, config.properties,
#             logs, pid and key files) is created under $TMPDIR. With a read-only root
#             filesystem (readOnlyRootFilesystem: true) mount an emptyDir at /tmp, or pass
#             --work_dir on a writable volume and set TMPDIR to it.
#   SIGTERM   stops serving after in-flight requests (--grace_period, 30 s) and exits 0.
#   tini      is PID 1: it forwards SIGTERM to the server and reaps any orphaned process
#             (a TorchServe worker whose frontend died), so none is left as a zombie.
#
# scripts/test-image.sh builds this image with podman and checks all of the above.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: the venv
FROM ${BASE_IMAGE} AS build

# pip settings of the build machine (see the header); unset unless passed.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_CLIENT_CERT
ARG PIP_CONSTRAINT
ARG PIP_DEFAULT_TIMEOUT
ARG PIP_RETRIES
ARG PIP_PROXY
ARG PIP_DISABLE_PIP_VERSION_CHECK

# The venv lives at the same path in both stages: venvs are not relocatable.
ENV VIRTUAL_ENV=/opt/kserve-torchserve \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# python3, not python: Debian's interpreter is /usr/bin/python3 only.
RUN python3 -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/python" -m pip install --upgrade "pip>=24" "setuptools>=69" wheel

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG TORCH_PACKAGES="torch torchvision"
ARG TORCH_FIND_LINKS=
# TORCH_PACKAGES is a list of requirements: split on purpose.
# hadolint ignore=SC2086
RUN "$VIRTUAL_ENV/bin/python" -m pip install --index-url "$TORCH_INDEX" \
      ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} $TORCH_PACKAGES \
 && "$VIRTUAL_ENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY kserve_torchserve ./kserve_torchserve
# Not editable: the venv must not point back at /src. torch stays as installed above.
# Dropped: torch's C++ test binaries and headers (~150 MB; nothing at run time uses
# them, and the image has no compiler to build extensions with).
# TorchServe's jar gets a whole-second mtime: the gRPC stubs' cache key holds it, and
# image layers (tar) keep whole seconds only, so the key survives a push and a pull.
RUN "$VIRTUAL_ENV/bin/python" -m pip install . \
 && "$VIRTUAL_ENV/bin/python" -m pip check \
 && site="$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm -rf "$site/torch/test" "$site/torch/include" \
 && find "$site/torch/bin" -type f \( -name '*Test' -o -name 'test_*' \) -delete \
 && jar="$("$VIRTUAL_ENV/bin/python" -c 'import kserve_torchserve.backend.grpc_stubs as g; print(g.jar_path())')" \
 && touch -d "@$(stat -c %Y "$jar")" "$jar"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

# man1 first: openjdk's postinst fails where slim images dropped /usr/share/man.
# Not pinned: the base's bookworm suites decide, and security updates must come in.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && java -version

RUN groupadd --gid 1000 kserve \
 && useradd --uid 1000 --gid 1000 --home-dir /home/kserve --create-home \
      --shell /usr/sbin/nologin kserve

COPY --from=build /opt/kserve-torchserve /opt/kserve-torchserve

ENV VIRTUAL_ENV=/opt/kserve-torchserve \
    PATH=/opt/kserve-torchserve/bin:$PATH \
    HOME=/home/kserve \
    XDG_CACHE_HOME=/home/kserve/.cache \
    TMPDIR=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# TorchServe's gRPC stubs are compiled from its jar on first use and cached under
# $XDG_CACHE_HOME; compile them now, since the root filesystem may be read-only at run
# time. World-readable, so any uid finds them; group 0 as OpenShift's arbitrary uids have.
RUN python -c "import kserve_torchserve.backend.grpc_stubs as g; g.load()" \
 && chown -R 1000:0 /home/kserve \
 && chmod -R g=u,o+rX /home/kserve

USER 1000:1000
WORKDIR /home/kserve
EXPOSE 8080 8081
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/kserve-torchserve/bin/python", "-m", "kserve_torchserve"]
