# kserve-torchserve: TorchServe (Java frontend + Python workers) behind KServe's model server.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY kserve_torchserve ./kserve_torchserve
# CPU torch keeps the image small; build with --build-arg TORCH_INDEX=... for a CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" . \
 && python -c "import kserve_torchserve.backend.grpc_stubs as p; p.load()"

# TorchServe writes its key file and logs into the working directory; run unprivileged.
RUN useradd --create-home --uid 1000 kserve
USER 1000
ENV HOME=/home/kserve
# Compile gRPC stubs for this user too (cached under $HOME/.cache).
RUN python -c "import kserve_torchserve.backend.grpc_stubs as p; p.load()"

EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "kserve_torchserve"]
