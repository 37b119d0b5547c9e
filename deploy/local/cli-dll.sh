#!/usr/bin/env bash
# Sourced from the repository root by the scripts that start nodes: sets the array `disttrain` to the command that runs
# the CLI. With CLI_DLL set, that disttrain.dll (a relative path is the caller's folder's, the second argument) and no
# build; otherwise the CLI is built here first. A CLI_DLL that is not there ends the script with exit code 2.
# Usage: source deploy/local/cli-dll.sh SCRIPT-NAME CALLER-FOLDER
if [ -n "${CLI_DLL:-}" ]; then
  dll="$CLI_DLL"; [[ "$dll" == /* ]] || dll="$2/$dll"
  [ -f "$dll" ] || { echo "$1: CLI_DLL = $CLI_DLL: no such file ($dll). Set CLI_DLL to a built disttrain.dll (relative to the folder you run the script in), or leave it unset to build one." >&2; exit 2; }
else
  dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet || exit
  dll="$PWD/src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll"
fi
disttrain=(dotnet "$dll")
