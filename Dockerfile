# Single-node mode in a container. Cluster mode (one container per node, compose in deploy/)
# is not built yet; this image runs `disttrain train` with every worker in one process.
#
#   docker build -t disttrain .
#   docker run --rm -v /usr/share/datasets/fashion-mnist:/data:ro -v "$PWD/runs:/app/runs" disttrain
#
# The data is mounted, not baked in: on Debian, `apt-get install dataset-fashion-mnist` puts the
# four IDX files in /usr/share/datasets/fashion-mnist. Settings can be overridden with
# DISTTRAIN_Section__Key environment variables, e.g. -e DISTTRAIN_Training__Workers=2.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY Directory.Build.props Directory.Packages.props DistTrain.sln ./
COPY src/ src/
RUN dotnet publish src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/runtime:10.0
WORKDIR /app
COPY --from=build /app ./
COPY configs/ configs/
RUN mkdir -p /app/runs && chown -R app:app /app/runs
USER app
VOLUME ["/data", "/app/runs"]
ENTRYPOINT ["dotnet", "disttrain.dll"]
CMD ["train", "--config", "configs/fashion-mnist-mlp.json", "--data", "/data", "--output", "/app/runs"]
