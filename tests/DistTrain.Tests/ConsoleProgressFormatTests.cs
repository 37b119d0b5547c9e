using System.Globalization;

namespace DistTrain.Tests;

/// <summary>How the console writes losses.</summary>
public sealed class ConsoleProgressFormatTests
{
    [Fact]
    public void Losses_have_four_decimals_and_from_a_million_on_an_exponent_not_forty_digits()
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            Assert.Equal("0.4312", Cli.ConsoleProgress.Loss(0.43124));
            Assert.Equal("999999.0000", Cli.ConsoleProgress.Loss(999_999));
            // A diverging run's loss: before, "6513379676909246691097444352.0000".
            Assert.Equal("6.5134E+027", Cli.ConsoleProgress.Loss(6.513379676909246e27));
            Assert.Equal("-1.0000E+006", Cli.ConsoleProgress.Loss(-1e6));
            Assert.Equal("NaN", Cli.ConsoleProgress.Loss(double.NaN));
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }
}
