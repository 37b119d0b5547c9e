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
/// a hidden folder for a class.) Symbolic links to folders are followed, as torchvision's are, unless one leads back into
/// the folder read, or to a folder another link leads to: its images would be read again, so that is an error
/// (<see cref="ListFiles"/>).
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
    /// sub-folder is not one of the training classes, a folder cannot be listed, a symbolic link to a folder would read
    /// images again (<see cref="ListFiles"/>), the images would not fit in one array, or an image cannot be read or decoded, is too large (<see cref="ImageFile.MaxPixels"/>) or has another size.</exception>
    public static LabeledDataset Read(string directory, TensorShape shape, bool resize, IReadOnlyList<string>? classNames = null) =>
        ReadFolder(directory, shape, resize, classNames, leaveOut: null).Data;

    /// <summary>
    /// Reads the images of the class sub-folders of <paramref name="directory"/> that are among <paramref name="classNames"/>,
    /// and leaves out, unread, those of the other sub-folders that <paramref name="leaveOut"/> picks, counting their images: for
    /// a model trained on some classes only (Data:Classes), whose evaluation leaves out samples of other labels as training
    /// leaves them out. A sub-folder neither among the classes nor picked is refused, as by <see cref="Read"/>.
    /// </summary>
    /// <param name="directory">The folder of class sub-folders.</param>
    /// <param name="shape">Channels, height and width of a sample (Model:InputShape).</param>
    /// <param name="resize">Resample images of another size; false makes them an error.</param>
    /// <param name="classNames">The model's classes, in its numbering; some may have no sub-folder.</param>
    /// <param name="leaveOut">Picks, by name, the sub-folders not among <paramref name="classNames"/> to leave out.</param>
    /// <returns>The samples of the classes' sub-folders (possibly none), and each sub-folder left out with its count of PNG and
    /// JPEG files (found as <see cref="Read"/> finds them; sub-folders without
    /// any are not listed), in sorted order.</returns>
    /// <exception cref="DataFormatException">As <see cref="Read"/>; an
    /// empty sub-folder among the classes is an error, an empty one left out is not.</exception>
    public static (LabeledDataset Data, IReadOnlyList<(string Folder, int Images)> LeftOut) ReadLeavingOut(string directory, TensorShape shape, bool resize,
        IReadOnlyList<string> classNames, Func<string, bool> leaveOut)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentNullException.ThrowIfNull(leaveOut);
        return ReadFolder(directory, shape, resize, classNames, leaveOut);
    }

    private static (LabeledDataset Data, IReadOnlyList<(string Folder, int Images)> LeftOut) ReadFolder(string directory, TensorShape shape, bool resize,
        IReadOnlyList<string>? classNames, Func<string, bool>? leaveOut)
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
        var other = folders.Where(f => !classes.Contains(f)).ToArray();
        var left = leaveOut is null ? [] : other.Where(leaveOut).ToArray();
        var unknown = other.Except(left).ToArray();
        if (unknown.Length > 0)
            throw new DataFormatException($"{directory}: {Counts.Noun(unknown.Length, "sub-folder")} {string.Join(", ", unknown.Select(f => $"'{f}'"))} {(unknown.Length == 1 ? "is not a class" : "are not classes")} of the training folder ({string.Join(", ", classes)}). Remove {(unknown.Length == 1 ? "it or train with it" : "them or train with them")}.");
        var walk = new FolderWalk(directory);
        var files = ListImages(directory, [.. folders.Except(left)], classes, walk);
        // The images of the sub-folders left out are counted, not read; the walk still refuses a link that would count some twice.
        var leftOut = new List<(string Folder, int Images)>();
        foreach (var folder in left)
        {
            int images;
            try
            {
                images = walk.Files(Path.Combine(directory, folder), ImageFile.HasImageExtension).Count;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new DataFormatException($"{Path.Combine(directory, folder)}: the folder could not be listed ({e.Message}). Check its permissions.");
            }
            if (images > 0) leftOut.Add((folder, images));
        }
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
        return (new LabeledDataset(features, [.. files.Select(f => f.Label)], shape.Size, classes.Count, [.. classes]) { SampleNames = [.. files.Select(f => f.Path)] },
            leftOut);
    }

    /// <summary>
    /// Image formats that are not read (<see cref="ImageFile"/> decodes PNG and JPEG): their files in class folders are
    /// skipped as every other file is, but <see cref="UnreadImages"/> finds them, so that training can say so.
    /// </summary>
    public static readonly string[] UnreadImageExtensions = [".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".avif"];

    /// <summary>
    /// The files in the class folders of <paramref name="directory"/> (not hidden, as <see cref="Read"/> lists them) that
    /// are images of a format not read (<see cref="UnreadImageExtensions"/>), in sorted order; empty when the folder is
    /// missing or cannot be listed, or a symbolic link in it would read images again (<see cref="Read"/> reports those).
    /// </summary>
    public static IReadOnlyList<string> UnreadImages(string directory)
    {
        try
        {
            var walk = new FolderWalk(directory);
            return [.. Directory.GetDirectories(directory).Where(d => !IsHidden(Path.GetFileName(d)))
                .SelectMany(classFolder => walk.Files(classFolder, path => UnreadImageExtensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase))))
                .Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DataFormatException)
        {
            return [];
        }
    }

    /// <summary>A hidden file or folder (its name starts with a dot), skipped.</summary>
    private static bool IsHidden(string name) => name.StartsWith('.');

    /// <summary>The image files of each class folder, in sorted order, with their class index.</summary>
    private static List<(string Path, byte Label)> ListImages(string directory, string[] folders, IReadOnlyList<string> classes, FolderWalk walk)
    {
        var files = new List<(string Path, byte Label)>();
        var empty = new List<string>();
        foreach (var folder in folders)
        {
            string[] images;
            try
            {
                var classFolder = Path.Combine(directory, folder);
                images = [.. walk.Files(classFolder, ImageFile.HasImageExtension).Order(StringComparer.Ordinal)];
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
            throw new DataFormatException($"{directory}: {Counts.Noun(empty.Count, "class folder")} {string.Join(", ", empty.Select(f => $"'{f}'"))} {(empty.Count == 1 ? "holds" : "hold")} no {string.Join(", ", ImageFile.Extensions)} file.");
        return files;
    }

    /// <summary>
    /// The files below <paramref name="folder"/>, searched recursively, that <paramref name="keep"/> selects, in ordinal
    /// order of their paths. Hidden entries (a name that starts with a dot) are skipped at every level. Symbolic links to
    /// folders are followed, as torchvision's ImageFolder (<c>os.walk(followlinks=True)</c>) follows them, but one that
    /// leads back into <paramref name="folder"/> (a loop such as <c>loop -&gt; ..</c>, which would read the folder again
    /// and again) or to a folder another link already leads to would read the same images twice, so it is refused.
    /// </summary>
    /// <param name="folder">The folder to search: an image folder (for predict's folder of images).</param>
    /// <param name="keep">Selects the files to list by path.</param>
    /// <exception cref="DataFormatException">A symbolic link to a folder leads back into <paramref name="folder"/>, or
    /// to where another link leads; the message names the link, where it leads, and the fix.</exception>
    /// <exception cref="IOException">A folder cannot be listed.</exception>
    /// <exception cref="UnauthorizedAccessException">A folder may not be listed.</exception>
    internal static List<string> ListFiles(string folder, Func<string, bool> keep) => [.. new FolderWalk(folder).Files(folder, keep).Order(StringComparer.Ordinal)];

    /// <summary>
    /// A search of the folders of one image folder (<see cref="ListFiles"/>): remembers where the symbolic links to folders
    /// it followed lead, so that a link into the image folder, or to a folder already reached, is refused with an error
    /// naming it rather than read again (a loop is otherwise followed until the system's limit of 40 nested links, which
    /// reads the whole folder some 40 times, labelled as the class the loop is in).
    /// </summary>
    private sealed class FolderWalk(string root)
    {
        /// <summary>How paths compare: ignoring case on Windows and macOS, whose file systems usually do.</summary>
        private static readonly StringComparison PathComparison =
            OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

        /// <summary>The image folder, with its symbolic links resolved.</summary>
        private readonly string _root = RealPath(root);

        /// <summary>The links followed so far, and where each leads (resolved).</summary>
        private readonly List<(string Link, string Target)> _followed = [];

        /// <summary>The files below <paramref name="folder"/> (itself inside the image folder, or the image folder) that
        /// <paramref name="keep"/> selects and that are not hidden, in the order found.</summary>
        public List<string> Files(string folder, Func<string, bool> keep)
        {
            var files = new List<string>();
            var pending = new Stack<string>();
            pending.Push(folder);
            while (pending.TryPop(out var current))
            {
                if (current != root) Follow(current); // the image folder itself may be reached through a link
                files.AddRange(Directory.EnumerateFiles(current).Where(path => !IsHidden(Path.GetFileName(path)) && keep(path)));
                foreach (var sub in Directory.EnumerateDirectories(current).Where(path => !IsHidden(Path.GetFileName(path)))) pending.Push(sub);
            }
            return files;
        }

        /// <summary>Checks <paramref name="folder"/> when it is a symbolic link: where it leads must be outside the image
        /// folder (or in a hidden folder of it, which is not walked), not hold it, and not overlap where another followed link leads.</summary>
        private void Follow(string folder)
        {
            if (new DirectoryInfo(folder).LinkTarget is null) return;
            var target = RealPath(folder);
            if (Holds(target, _root))
                throw new DataFormatException($"{folder}: a symbolic link " + (string.Equals(target, _root, PathComparison) ? $"back to {root}" : $"to {target}, which holds {root}") +
                    $": a loop, which would read the same images again and again. Remove the link; links to folders outside {root} are followed.");
            // Inside the image folder, but in a hidden folder, which the walk skips: its images are read once, through the link.
            if (Holds(_root, target) && !Path.GetRelativePath(_root, target).Split(Path.DirectorySeparatorChar).Any(IsHidden))
                throw new DataFormatException($"{folder}: a symbolic link to {target}, which is inside {root}: its images would be read twice, once through " +
                    $"the link. Remove the link (copy the images if they are meant to be read twice); links to folders outside {root} are followed.");
            foreach (var (link, other) in _followed)
                if (Holds(other, target) || Holds(target, other))
                    throw new DataFormatException($"{folder}: a symbolic link to {target}, " +
                        (string.Equals(target, other, PathComparison) ? $"where {link} leads too" : Holds(other, target) ? $"inside {other}, where {link} leads" : $"which holds {other}, where {link} leads") +
                        ": its images would be read twice. Remove one of the two links.");
            _followed.Add((folder, target));
        }

        /// <summary>True when <paramref name="inner"/> is <paramref name="outer"/> or inside it (both resolved, absolute).</summary>
        private static bool Holds(string outer, string inner) =>
            string.Equals(outer, inner, PathComparison)
            || inner.StartsWith(Path.EndsInDirectorySeparator(outer) ? outer : outer + Path.DirectorySeparatorChar, PathComparison);

        /// <summary>
        /// The absolute path of <paramref name="path"/> with every symbolic link on the way resolved, as realpath(3) gives it:
        /// a folder reached through different links has one such path.
        /// </summary>
        /// <exception cref="IOException">More than 40 links on the way (a loop of links).</exception>
        private static string RealPath(string path)
        {
            char[] separators = [Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar];
            var full = Path.IsPathFullyQualified(path) ? path : Path.GetFullPath(path);
            var real = Path.GetPathRoot(full)!;
            var pending = new Stack<string>(full[real.Length..].Split(separators, StringSplitOptions.RemoveEmptyEntries).Reverse());
            var links = 0;
            while (pending.TryPop(out var part))
            {
                if (part == ".") continue;
                if (part == "..")
                {
                    real = Path.GetDirectoryName(real) ?? real;
                    continue;
                }
                var next = Path.Combine(real, part);
                if (new FileInfo(next).LinkTarget is { } target)
                {
                    if (++links > 40) throw new IOException($"{path}: too many levels of symbolic links.");
                    foreach (var step in target.Split(separators, StringSplitOptions.RemoveEmptyEntries).Reverse()) pending.Push(step);
                    if (Path.IsPathRooted(target)) real = Path.GetPathRoot(Path.GetFullPath(target))!;
                    continue;
                }
                real = next;
            }
            return real;
        }
    }
}
