using System.Runtime.InteropServices;

namespace DistTrain.Cluster.Security;

/// <summary>
/// Why a key or secret file cannot be read when access is denied: who owns it, its mode, and the user this process
/// runs as. The usual cause is a file made by deploy/certs/make-certs.sh without KEY_UID, so it belongs to the user who
/// ran the script while the node runs as another (the container image's user app, uid 1654).
/// </summary>
internal static partial class FileAccessHint
{
    /// <summary>The image's user (Dockerfile: useradd --uid 1654 app), which make-certs.sh's KEY_UID gives the keys to.</summary>
    internal const int ImageUserId = 1654;

    private const int CurrentDirectory = -100; // AT_FDCWD
    private const uint OwnerMask = 0x8; // STATX_UID

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directory, string path, int flags, uint mask, byte[] buffer);

    /// <summary>
    /// A sentence naming the likely cause of <paramref name="error"/> for <paramref name="path"/> when it is a denied
    /// access, else an empty string.
    /// </summary>
    public static string For(string path, Exception error)
    {
        if (error is not UnauthorizedAccessException) return "";
        var process = ProcessUser();
        var file = FileOwnerAndMode(path);
        return $" The file {file}, and this process runs as {process}, which may not read it. make-certs.sh gives the keys and the secret " +
               $"to the user who runs it unless KEY_UID names another: for the container image's user app run " +
               $"KEY_UID={ImageUserId} deploy/certs/make-certs.sh deploy/certs/out ps ps-standby worker (it calls sudo for the chown itself), " +
               "or chown the file to the user the node runs as.";
    }

    /// <summary>
    /// The problem for <paramref name="key"/> = <paramref name="path"/> when a folder stands where its file belongs, else
    /// null. Docker makes an empty folder in place of a bind-mounted file that did not exist when the container started
    /// (compose's short volume syntax), and reading it then fails as a denied access or a corrupt certificate.
    /// </summary>
    public static string? FolderInsteadOfFile(string key, string path) => !Directory.Exists(path) ? null
        : $"{key} = '{path}' is a folder, not a file. Docker makes an empty folder in place of a mounted file that did not exist when the " +
          "container started: remove the folders it made (sudo rm -r deploy/certs/out), make the files with deploy/certs/make-certs.sh " +
          "(deploy/README.md), and start the containers again.";

    private static string ProcessUser()
    {
        try
        {
            var name = Environment.UserName; // empty when the uid has no entry in /etc/passwd
            return string.IsNullOrEmpty(name) ? $"uid {GetEffectiveUserId()}" : $"uid {GetEffectiveUserId()} ({name})";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"the user {Environment.UserName}";
        }
    }

    private static string FileOwnerAndMode(string path)
    {
        if (OperatingSystem.IsWindows()) return "is closed to this user";
        string mode;
        try
        {
            mode = $"mode {Octal(File.GetUnixFileMode(path))}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return "cannot be looked at (a folder on its path may be closed to this user)";
        }
        try
        {
            // struct statx: stx_mask (u32), stx_blksize (u32), stx_attributes (u64), stx_nlink (u32), stx_uid (u32) at offset 20.
            var buffer = new byte[256];
            if (Statx(CurrentDirectory, path, 0, OwnerMask, buffer) == 0)
                return $"belongs to uid {BitConverter.ToUInt32(buffer, 20)} with {mode}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return $"has {mode}";
    }

    private static string Octal(UnixFileMode mode) => Convert.ToString((int)mode & 0b111_111_111, 8).PadLeft(3, '0');
}
