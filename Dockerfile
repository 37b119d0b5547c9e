# DistTrain image: single-node mode (`train`, the default command) or one cluster node (`node`);
# deploy/docker-compose.yml runs the cluster. Data is mounted at /data (Debian's dataset-fashion-mnist
# puts it in /usr/share/datasets/fashion-mnist on the host):
#
#   docker build -t disttrain .
#   docker run --rm -v /usr/share/datasets/fashion-mnist:/data:ro -v "$PWD/runs:/app/runs" disttrain
#
# Settings are overridden with DISTTRAIN_Section__Key environment variables.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/ src/
RUN dotnet publish src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/runtime:10.0
# Native BLAS: without it DistTrain falls back to the managed provider, about 20x slower.
# oneDNN 2.x (libdnnl2) runs the convolutions; without it DistTrain falls back to im2col + sgemm, about 1.7x
# slower per convolution (1.5x end to end on the CNN). The .NET 10 runtime image is Ubuntu 24.04, which packages
# only oneDNN 3.1 (libdnnl3, a different C API), so libdnnl2 is installed where the base image has it and the
# image otherwise runs im2col (the start-up line "Convolutions: ..." says which).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread \
 && (apt-get install -y --no-install-recommends libdnnl2 || echo "libdnnl2 not packaged for this base image: convolutions use im2col") \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app ./
COPY configs/ configs/
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# runs/ for results; checkpoints/ for the checkpoint volume the parameter-server nodes share (a named
# volume takes the owner of the image's folder, so the app user can write it).
RUN mkdir -p /app/runs /app/checkpoints && chown app /app/runs /app/checkpoints
# The runtime image's non-root user.
USER app
ENV DISTTRAIN_Data__Directory=/data \
    DISTTRAIN_Output__Directory=/app/runs \
    DISTTRAIN_Output__HealthFile=/tmp/disttrain-alive
# Every command touches the health file every 5 s while it runs; a hung or dead process stops touching it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD test -n "$(find /tmp/disttrain-alive -mmin -1 2>/dev/null)" || exit 1
EXPOSE 4053 4054
VOLUME ["/data", "/app/runs"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["train", "--config", "configs/fashion-mnist-mlp.json"]
