using Xunit.Sdk;

namespace DistTrain.Tests;

/// <summary>The suite's tolerance helpers must fail on what they are meant to catch, NaN and infinity above all.</summary>
public class CompareTests
{
    private static readonly float[] Expected = [1f, -2f, 0.5f, 1000f];

    private static float[] With(int index, float value)
    {
        var actual = (float[])Expected.Clone();
        actual[index] = value;
        return actual;
    }

    [Fact]
    public void Close_passes_within_the_tolerance_and_fails_beyond_it_naming_the_worst_element()
    {
        Compare.Close(Expected, With(3, 1000.05f), relative: 1e-4, absolute: 0, "within 1e-4 relative");
        Compare.Close(Expected, With(0, 1.05f), relative: 0, absolute: 0.06, "within 0.06 absolute");
        var error = Assert.ThrowsAny<XunitException>(() =>
            Compare.Close(Expected, [1.01f, -2f, 0.9f, 1000f], relative: 0, absolute: 1e-3, "weights"));
        Assert.Contains("weights: element 2 expected 0.5 but was 0.9", error.Message);
    }

    [Theory]
    [InlineData(0, float.NaN)]
    [InlineData(3, float.NaN)]
    [InlineData(1, float.PositiveInfinity)]
    [InlineData(2, float.NegativeInfinity)]
    public void Close_fails_on_a_non_finite_actual_element_whatever_the_tolerance(int index, float value)
    {
        var error = Assert.ThrowsAny<XunitException>(() => Compare.Close(Expected, With(index, value), relative: 1e9, absolute: 1e9, "output"));
        Assert.Contains($"output: element {index}", error.Message);
        Assert.Contains("not finite", error.Message);
    }

    [Fact]
    public void Close_fails_when_the_expected_side_is_not_finite_even_if_both_sides_agree()
    {
        Assert.ThrowsAny<XunitException>(() => Compare.Close(With(1, float.NaN), With(1, float.NaN), 1e-3, 1e-3, "both NaN"));
        Assert.ThrowsAny<XunitException>(() => Compare.Close(With(1, float.PositiveInfinity), With(1, float.PositiveInfinity), 1e-3, 1e-3, "both +inf"));
    }

    [Fact]
    public void Close_fails_on_a_NaN_tolerance_instead_of_passing_everything()
    {
        Assert.ThrowsAny<XunitException>(() => Compare.Close(Expected, With(0, 1.5f), relative: 0, absolute: double.NaN, "NaN tolerance"));
    }

    [Theory]
    [InlineData(double.NaN, 1.0)]
    [InlineData(1.0, double.NaN)]
    [InlineData(double.NaN, double.NaN)]
    [InlineData(double.PositiveInfinity, double.PositiveInfinity)]
    [InlineData(1.0, double.NegativeInfinity)]
    public void The_scalar_Close_fails_on_NaN_and_infinity(double expected, double actual)
    {
        Assert.ThrowsAny<XunitException>(() => Compare.Close(expected, actual, relative: 1e9, absolute: 1e9, "loss"));
    }

    [Fact]
    public void Identical_compares_bits_and_rejects_NaN_on_both_sides()
    {
        Compare.Identical(Expected, (float[])Expected.Clone(), "copy");
        Assert.ThrowsAny<XunitException>(() => Compare.Identical(Expected, With(2, BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(0.5f) + 1)), "one ulp"));
        Assert.ThrowsAny<XunitException>(() => Compare.Identical(With(0, 0f), With(0, -0f), "signed zero"));
        Assert.ThrowsAny<XunitException>(() => Compare.Identical(With(3, float.NaN), With(3, float.NaN), "NaN"));
    }
}
