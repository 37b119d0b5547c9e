using DistTrain.Core;

namespace DistTrain.Tests;

/// <summary>The counts of human-facing lines: singular for one, plural otherwise, thousands separators in the invariant culture.</summary>
public sealed class CountsTests
{
    [Theory]
    [InlineData(0, "0 epochs")]
    [InlineData(1, "1 epoch")]
    [InlineData(2, "2 epochs")]
    [InlineData(12345, "12,345 epochs")]
    public void Of_reads_right_for_zero_one_and_many(long count, string expected) => Assert.Equal(expected, Counts.Of(count, "epoch"));

    [Fact]
    public void Of_takes_an_irregular_plural_and_a_noun_phrase()
    {
        Assert.Equal("1 micro-batch", Counts.Of(1, "micro-batch", "micro-batches"));
        Assert.Equal("3 micro-batches", Counts.Of(3, "micro-batch", "micro-batches"));
        Assert.Equal("1 finished epoch", Counts.Of(1, "finished epoch"));
    }

    [Fact]
    public void Noun_and_Number_apart()
    {
        Assert.Equal("worker", Counts.Noun(1, "worker"));
        Assert.Equal("workers", Counts.Noun(0, "worker"));
        Assert.Equal("12,345", Counts.Number(12345));
        Assert.Equal("1,234,567 samples", Counts.Of(1234567, "sample"));
    }

    [Fact]
    public void The_separators_do_not_follow_the_current_culture()
    {
        var culture = System.Globalization.CultureInfo.CurrentCulture;
        try
        {
            var dots = (System.Globalization.CultureInfo)System.Globalization.CultureInfo.InvariantCulture.Clone();
            dots.NumberFormat.NumberGroupSeparator = ".";
            System.Globalization.CultureInfo.CurrentCulture = dots;
            Assert.Equal("12,345 samples", Counts.Of(12345, "sample"));
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentCulture = culture;
        }
    }
}
