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

    /// <summary>
    /// The live view shows the epoch that started, and at an epoch's end its last step, before the epoch's line is written
    /// above it: with epochs shorter than its one-second redraw, it showed <c>epoch 0/N ... step 0/0</c> under every epoch line.
    /// </summary>
    [Fact]
    public void The_live_view_is_set_at_each_epochs_start_and_end_not_only_once_a_second()
    {
        var views = new List<string>();
        var observer = new Cli.ConsoleProgress.LiveObserver(3, Core.Optimization.OptimizerKind.Sgd) { Update = view => views.Add(Text(view)) };
        Assert.Contains("training is starting", Text(observer.Render())); // before the first epoch: no empty bar, step 0/0 or loss 0
        observer.EpochStarted(1, 10, 640);
        Assert.Single(views);
        Assert.Contains("epoch  1/3", views[^1]);
        Assert.Contains("step 0/10", views[^1]);
        // No step yet: dashes, not "loss 0.0000  lr 0", figures no step had.
        Assert.Contains("step 0/10  loss -  lr -", views[^1]);
        for (var step = 0; step < 10; step++)
            observer.StepApplied(1, step, step + 1, 64, 0.5, 0.05, default);
        Assert.Single(views); // steps are drawn by the once-a-second redraw
        observer.EpochCompleted(new DistTrain.Cluster.Hosting.EpochSummary(1, 10, 0.5, 0.6, 0.8, 100, 640, 0.01, 0.01));
        Assert.Equal(2, views.Count);
        Assert.Contains("epoch  1/3", views[^1]);
        Assert.Contains("step 10/10  loss 0.5000  lr 0.05", views[^1]);
        Assert.DoesNotContain(views, view => view.Contains("step 0/0", StringComparison.Ordinal));

        static string Text(Spectre.Console.Rendering.IRenderable view)
        {
            var writer = new StringWriter();
            var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
            {
                Out = new Spectre.Console.AnsiConsoleOutput(writer), Ansi = Spectre.Console.AnsiSupport.No, ColorSystem = Spectre.Console.ColorSystemSupport.NoColors,
            });
            console.Profile.Width = 160;
            console.Write(view);
            return writer.ToString();
        }
    }

    /// <summary>
    /// Lines, table cells and error lines written through the CLI's helpers come out exactly as given: Spectre.Console's
    /// markup would turn ":fire:" into an emoji and read "[x]" as a style, which a config key, a path or a class name may hold.
    /// </summary>
    [Fact]
    public void Literal_lines_and_table_cells_keep_emoji_shortcodes_and_brackets_as_given()
    {
        var writer = new StringWriter();
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(writer), Ansi = Spectre.Console.AnsiSupport.No, ColorSystem = Spectre.Console.ColorSystemSupport.NoColors,
        });
        console.Profile.Width = 200;
        const string text = "Nope:Key: /tmp/x:fire:y [bold]green:fire:[/]";
        DistTrain.Cli.CliConsole.WriteLiteralLine(console, text);
        DistTrain.Cli.CliConsole.WriteLiteralLine(console, "warning:", new Spectre.Console.Style(Spectre.Console.Color.Red), " a:fire:b");
        console.Write(DistTrain.Cli.CliConsole.AddLiteralRow(Spectre.Console.TableExtensions.AddColumns(new Spectre.Console.Table(), "a", "b"), "green:fire:", "[red]"));
        var output = writer.ToString();
        Assert.StartsWith(text + Environment.NewLine + "warning: a:fire:b" + Environment.NewLine + "┌", output); // one line each, no blank one
        Assert.Contains("green:fire:", output[text.Length..]);
        Assert.Contains("[red]", output);
        Assert.DoesNotContain("\U0001F525", output); // no 🔥
        Assert.DoesNotContain("🔥", output);
    }
}
