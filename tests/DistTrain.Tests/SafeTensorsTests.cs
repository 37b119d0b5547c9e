using DistTrain.Core.Checkpoints;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

public class SafeTensorsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-st-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static ParameterVector Sample()
    {
        var layout = new ParameterLayout([("0.weight", [3, 2]), ("0.bias", [3])]);
        return new ParameterVector(layout, [1, 2, 3, 4, 5, 6, -1, -2, -3]);
    }

    [Fact]
    public void Tensors_round_trip_with_names_shapes_and_values()
    {
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt" });
        var tensors = SafeTensors.Read(path);
        Assert.Equal(new[] { 3, 2 }, tensors["0.weight"].Shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, tensors["0.weight"].Data);
        Assert.Equal(new float[] { -1, -2, -3 }, tensors["0.bias"].Data);
        // Header length (8 bytes) + header padded to 8 + 9 floats.
        var length = new FileInfo(path).Length;
        Assert.Equal(0, (length - 36) % 8);
    }

    [Fact]
    public void A_truncated_file_is_reported_with_its_name()
    {
        var path = Path.Combine(_directory, "cut.safetensors");
        SafeTensors.Write(path, Sample());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^8]);
        var error = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
    }
}
