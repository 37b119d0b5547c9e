using DistTrain.Fuzz;
using DistTrain.Fuzz.Targets;

namespace DistTrain.Tests;

/// <summary>
/// A short, seeded run of every fuzz target (tests/DistTrain.Fuzz; the million-input runs are tests/fuzz/run.sh): each
/// reader accepts or refuses a few thousand hostile inputs with its documented error, within its memory bound. Time is not
/// checked here (the machine is shared); the full runs check it.
/// </summary>
public class FuzzSmokeTests
{
    private const long Inputs = 2_000;

    private static void Smoke(FuzzTarget target, string seed)
    {
        var report = FuzzRunner.Run(target, Inputs, seed, hangLimit: null);
        Assert.Equal(Inputs, report.Inputs);
        // Each generator makes inputs of both kinds; a reader that accepts or refuses everything is not being exercised.
        Assert.True(report.Accepted > 0 && report.Refused > 0, report.ToString());
    }

    [Fact]
    public void MessagePack_messages()
    {
        using var messagePack = new MessagePackTarget();
        Smoke(messagePack.Create(), "3UtdUkuw2N-1");
    }

    [Fact]
    public void Data_plane_frame_headers() => Smoke(FrameHeaderTarget.Create(), "5q76Hb--_-j1");

    [Fact]
    public void Safetensors_files() => Smoke(SafeTensorsTarget.Create(), "2SmwUwmTiFY1");

    [Fact]
    public void Idx_files() => Smoke(IdxTarget.Create(), "806QwAlIQRe1");

    [Fact]
    public void Config_files() => Smoke(ConfigTarget.Create(), "bOVQD6geycJ1");

    [Fact]
    public void Gzip_files() => Smoke(GzipTarget.Create(), "806QwAlIQRe1");
}
