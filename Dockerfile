# DistTrain image: single-node mode (`train`, the default command) or one cluster node (`node`);
# deploy/docker-compose.yml runs the cluster. The image carries Fashion-MNIST (Debian's dataset-fashion-mnist),
# so it needs nothing from the host:
#
#   docker build -t disttrain .
#   docker run --rm disttrain
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/app/runs" disttrain train --config configs/fashion-mnist-cnn.json
#
# (--user lets the container write a folder of this machine's user; without it the image's user app, uid 1654, runs.)
#
# Other data in the same IDX layout: mount its folder at /data (it replaces the image's copy). Settings are
# overridden with DISTTRAIN_Section__Key environment variables. deploy/README.md has the cluster, the image's
# size and build time, and how the image is tested.

# Build: the app published self-contained for linux-x64 (the .NET runtime comes from NuGet's runtime pack), so
# the runtime stage needs no .NET image. Project files first: the restore layer is reused until they change.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/DistTrain.Core/DistTrain.Core.csproj src/DistTrain.Core/
COPY src/DistTrain.Cluster/DistTrain.Cluster.csproj src/DistTrain.Cluster/
COPY src/DistTrain.Cli/DistTrain.Cli.csproj src/DistTrain.Cli/
RUN dotnet restore src/DistTrain.Cli/DistTrain.Cli.csproj -r linux-x64 -p:SelfContained=true
COPY src/ src/
RUN dotnet publish src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -r linux-x64 --self-contained --no-restore \
      -p:DebugType=none -p:GenerateDocumentationFile=false -o /app --nologo

# Runtime: Debian bookworm, the release whose OpenBLAS (0.3.21) and oneDNN 2.x (libdnnl2, the C API DistTrain
# calls) the project is built and tested against. Without libopenblas0-pthread matrix products fall back to the
# managed provider (about 20x slower); without libdnnl2 convolutions fall back to im2col + sgemm (about 1.7x
# slower per convolution). The start-up lines "BLAS: ..." and "Convolutions: ..." name what runs.
# libssl3: .NET's cryptography (checkpoint SHA-256) calls OpenSSL.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread libdnnl2 libssl3 dataset-fashion-mnist \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /data \
 && ln -s /usr/share/datasets/fashion-mnist/* /data/ \
 && useradd --uid 1654 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /app ./
COPY configs/ configs/
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# runs/ for results; checkpoints/ for the checkpoint volume the parameter-server nodes share (a named volume
# takes the owner of the image's folder, so the app user can write it).
RUN mkdir -p /app/runs /app/checkpoints && chown app:app /app/runs /app/checkpoints
USER app
ENV DISTTRAIN_Data__Directory=/data \
    DISTTRAIN_Output__Directory=/app/runs \
    DISTTRAIN_Output__HealthFile=/tmp/disttrain-alive
# Every command touches the health file every 5 s while it runs; a hung or dead process stops touching it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD test -n "$(find /tmp/disttrain-alive -mmin -1 2>/dev/null)" || exit 1
EXPOSE 4053 4054 9100
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["train", "--config", "configs/fashion-mnist-mlp.json"]
