using DistTrain.Core.Layers;

namespace DistTrain.Core.Data;

/// <summary>
/// Reads a folder laid out as torchvision's <c>ImageFolder</c>: one sub-folder per class (classes numbered in the
/// sorted, ordinal order of the sub-folder names), each holding PNG or JPEG files (searched recursively, in sorted
/// order; files with other extensions are skipped). Each image becomes a sample of <see cref="ImageFile"/>.
/// </summary>
/// <remarks>
/// Hidden entries, whose names start with a dot, are skipped at every level: a notebook's <c>.ipynb_checkpoints</c>
/// folder is not a class, and macOS's <c>._name.png</c> resource files are not images. (torchvision's ImageFolder takes
/// a hidden folder for a class.)
/// </remarks>
public static class ImageFolderDataset
{
    /// <summary>Reads every image of <paramref name="directory"/>.</summary>
    /// <param name="directory">The folder of class sub-folders.</param>
    /// <param name="shape">Channels (1 grayscale, 3 RGB), height and width of a sample (Model:InputShape).</param>
    /// <param name="resize">Resample images of another size (Data:ImageFolder:Resize); false makes them an error.</param>
    /// <param name="classNames">The training folder's classes, when reading a test folder: its sub-folders must be among
    /// them (some may be missing) and keep the training folder's numbering. Null: this folder's sub-folders are the classes.</param>
    /// <returns>The samples, class by class, with <see cref="LabeledDataset.ClassNames"/> and <see cref="LabeledDataset.SampleNames"/> (the files) set.</returns>
    /// <exception cref="DataFormatException">The folder is missing or has no class sub-folders, a class has no image, a
    /// sub-folder is not one of the training classes, a folder cannot be listed, the images would not fit in one array,
    /// or an image cannot be read or decoded, is too large (<see cref="ImageFile.MaxPixels"/>) or has another size.</exception>
    public static LabeledDataset Read(string directory, TensorShape shape, bool resize, IReadOnlyList<string>? classNames = null)
    {
        if (!Directory.Exists(directory))
            throw new DataFormatException($"{directory}: no such folder. Give a folder with one sub-folder of images per class (Data:ImageFolder:TrainDirectory / TestDirectory).");
        string[] folders;
        try
        {
            folders = [.. Directory.GetDirectories(directory).Select(d => Path.GetFileName(d)).Where(name => !IsHidden(name)).Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{directory}: the folder could not be listed ({e.Message}). Check its permissions.");
        }
        if (folders.Length == 0)
            throw new DataFormatException($"{directory}: no class sub-folders. Put each class's images in a sub-folder named after the class (as torchvision's ImageFolder).");
        IReadOnlyList<string> classes = classNames ?? folders;
        if (classes.Count > LabelVocabulary.MaxClasses)
            throw new DataFormatException($"{directory}: {classes.Count} class sub-folders; at most {LabelVocabulary.MaxClasses} classes are supported.");
        var unknown = folders.Where(f => !classes.Contains(f)).ToArray();
        if (unknown.Length > 0)
            throw new DataFormatException($"{directory}: sub-folder(s) {string.Join(", ", unknown.Select(f => $"'{f}'"))} are not classes of the training folder ({string.Join(", ", classes)}). Remove them or train with them.");
        var files = ListImages(directory, folders, classes);
        if ((long)files.Count * shape.Size > Array.MaxLength)
            throw new DataFormatException($"{directory}: {files.Count:N0} images of {shape} would be {(long)files.Count * shape.Size:N0} values, more than one array holds ({Array.MaxLength:N0}). Use fewer or smaller images (Model:InputShape), or split the folder.");
        var features = new float[files.Count * shape.Size];
        // Decoding is independent per file; the first failure (in file order) is reported.
        var failures = new DataFormatException?[files.Count];
        Parallel.For(0, files.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            try
            {
                ImageFile.Read(files[i].Path, shape, resize, features.AsSpan(i * shape.Size, shape.Size));
            }
            catch (DataFormatException e)
            {
                failures[i] = e;
            }
        });
        if (failures.FirstOrDefault(f => f is not null) is { } failure) throw failure;
        return new LabeledDataset(features, [.. files.Select(f => f.Label)], shape.Size, classes.Count, [.. classes]) { SampleNames = [.. files.Select(f => f.Path)] };
    }

    /// <summary>
    /// Image formats that are not read (<see cref="ImageFile"/> decodes PNG and JPEG): their files in class folders are
    /// skipped as every other file is, but <see cref="UnreadImages"/> finds them, so that training can say so.
    /// </summary>
    public static readonly string[] UnreadImageExtensions = [".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".avif"];

    /// <summary>
    /// The files in the class folders of <paramref name="directory"/> (not hidden, as <see cref="Read"/> lists them) that
    /// are images of a format not read (<see cref="UnreadImageExtensions"/>), in sorted order; empty when the folder is
    /// missing or cannot be listed (<see cref="Read"/> reports that).
    /// </summary>
    public static IReadOnlyList<string> UnreadImages(string directory)
    {
        try
        {
            return [.. Directory.GetDirectories(directory).Where(d => !IsHidden(Path.GetFileName(d)))
                .SelectMany(classFolder => Directory.EnumerateFiles(classFolder, "*", SearchOption.AllDirectories)
                    .Where(path => UnreadImageExtensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase)) && !IsHiddenBelow(classFolder, path)))
                .Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>A hidden file or folder (its name starts with a dot), skipped.</summary>
    private static bool IsHidden(string name) => name.StartsWith('.');

    /// <summary>True when <paramref name="path"/>, found under <paramref name="root"/>, is hidden or inside a hidden folder
    /// below it (a name on the way starts with a dot): such files are not images to read (<c>._name.png</c>, <c>.thumbnails/</c>).</summary>
    internal static bool IsHiddenBelow(string root, string path) =>
        Path.GetRelativePath(root, path).Split(Path.DirectorySeparatorChar).Any(IsHidden);

    /// <summary>The image files of each class folder, in sorted order, with their class index.</summary>
    private static List<(string Path, byte Label)> ListImages(string directory, string[] folders, IReadOnlyList<string> classes)
    {
        var files = new List<(string Path, byte Label)>();
        var empty = new List<string>();
        foreach (var folder in folders)
        {
            string[] images;
            try
            {
                var classFolder = Path.Combine(directory, folder);
                images = [.. Directory.EnumerateFiles(classFolder, "*", SearchOption.AllDirectories)
                    .Where(path => ImageFile.HasImageExtension(path) && !IsHiddenBelow(classFolder, path))
                    .Order(StringComparer.Ordinal)];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new DataFormatException($"{Path.Combine(directory, folder)}: the class folder could not be listed ({e.Message}). Check its permissions.");
            }
            if (images.Length == 0) empty.Add(folder);
            var label = (byte)classes.ToList().IndexOf(folder);
            files.AddRange(images.Select(path => (path, label)));
        }
        if (empty.Count > 0)
            throw new DataFormatException($"{directory}: class folder(s) {string.Join(", ", empty.Select(f => $"'{f}'"))} hold no {string.Join(", ", ImageFile.Extensions)} file.");
        return files;
    }
}
