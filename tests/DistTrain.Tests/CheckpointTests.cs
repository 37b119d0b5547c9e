using System.Text.RegularExpressions;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>The checkpoint file, the store's retention and atomicity, and the finder's fallback past corrupt files.</summary>
public class CheckpointFormatTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly ParameterLayout Layout = new([("0.weight", [3, 2]), ("0.bias", [3])]);

    private static TrainingCheckpoint Sample(long version, int epoch = 2, int round = 3)
    {
        var weights = new ParameterVector(Layout, [1, 2, 3, 4, 5, 6, -1, -2, version]);
        float[] expAvg = [.. Enumerable.Range(0, 9).Select(i => i * 0.5f)];
        float[] expAvgSq = [.. Enumerable.Range(0, 9).Select(i => i * 0.25f + version)];
        return new TrainingCheckpoint(weights, [("exp_avg", expAvg), ("exp_avg_sq", expAvgSq)], OptimizerKind.Adam, optimizerSteps: version,
            version, epoch, round, shardSeed: 7, workers: 2, batchSizePerWorker: 50, epochSamples: 300, epochLossSum: 123.25);
    }

    [Fact]
    public void Weights_optimizer_state_and_position_round_trip()
    {
        var path = Path.Combine(_directory, "c.safetensors");
        Sample(17).Write(path);
        var read = TrainingCheckpoint.Read(path, Layout);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6, -1, -2, 17 }, read.Weights.Values);
        Assert.Equal(["exp_avg", "exp_avg_sq"], read.OptimizerState.Select(s => s.Name));
        Assert.Equal(Enumerable.Range(0, 9).Select(i => i * 0.25f + 17), read.OptimizerState[1].Values);
        Assert.Equal((OptimizerKind.Adam, 17L, 17L, 2, 3, 7, 2, 50, 300, 123.25),
            (read.OptimizerKind, read.OptimizerSteps, read.Version, read.Epoch, read.Round, read.ShardSeed, read.Workers, read.BatchSizePerWorker, read.EpochSamples, read.EpochLossSum));
        // The file is plain safetensors: the weights by state_dict name, the state as optimizer.* of shape [trainable length].
        var tensors = SafeTensors.Read(path);
        Assert.Equal(new[] { 3, 2 }, tensors["0.weight"].Shape);
        Assert.Equal(new[] { 9 }, tensors["optimizer.exp_avg"].Shape);
        var metadata = SafeTensors.ReadMetadata(path);
        Assert.Equal("disttrain-checkpoint", metadata["format"]);
        Assert.Equal(TrainingCheckpoint.LayoutFingerprint(Layout), metadata["model_fingerprint"]);
        Assert.Equal(64, metadata["data_sha256"].Length);

        var adam = Optimizer.Create(new OptimizerOptions { Kind = OptimizerKind.Adam }, 9);
        read.RestoreOptimizer(adam);
        Assert.Equal(17, adam.StepCount);
        Assert.Equal(read.OptimizerState[0].Values, adam.State[0].Values);
    }

    [Fact]
    public void A_flipped_byte_in_the_data_section_is_a_checksum_error_naming_the_file()
    {
        var path = Path.Combine(_directory, "c.safetensors");
        Sample(1).Write(path);
        var bytes = File.ReadAllBytes(path);
        bytes[^5] ^= 0x10; // inside optimizer.exp_avg_sq, the last tensor
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path, Layout));
        Assert.StartsWith(path + ": checksum mismatch", error.Message);
        // Its weights as pretrained ones (Model:Pretrained, finetune --from a checkpoint) are refused alike.
        Assert.StartsWith(path + ": checksum mismatch: the data section's SHA-256 is ", Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path)).Message);
    }

    /// <summary>
    /// Edits one byte of a checkpoint's header in place, as a hand edit of the same length would: the character at
    /// <paramref name="offset"/> into <paramref name="text"/>, which must occur exactly once in the file, becomes <paramref name="with"/>.
    /// </summary>
    private static void EditHeader(string path, string text, int offset, char with)
    {
        var bytes = File.ReadAllBytes(path);
        var content = System.Text.Encoding.Latin1.GetString(bytes);
        var at = content.IndexOf(text, StringComparison.Ordinal);
        Assert.True(at > 0 && content.IndexOf(text, at + 1, StringComparison.Ordinal) < 0);
        bytes[at + offset] = (byte)with;
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public void A_header_edited_to_another_round_of_the_same_length_is_a_checksum_error()
    {
        // The data's SHA-256 does not cover the header: before its own checksum, "round":"3" edited to "round":"1" resumed
        // from round 1 and trained rounds 1 and 2 of that epoch twice, without a word.
        var path = Path.Combine(_directory, "c.safetensors");
        Sample(1, epoch: 2, round: 3).Write(path);
        EditHeader(path, "\"round\":\"3\"", "\"round\":\"".Length, '1');
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path, Layout));
        Assert.StartsWith(path + ": checksum mismatch: the header's metadata has SHA-256 ", error.Message);
        Assert.Contains("The header was edited or is corrupt", error.Message);

        // A checkpoint written before the header had its checksum (no metadata_sha256) still reads.
        Sample(1, epoch: 2, round: 3).Write(path);
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BitConverter.ToUInt64(bytes);
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(8, headerLength))!.AsObject();
        Assert.True(header["__metadata__"]!.AsObject().Remove("metadata_sha256"));
        var json = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString().PadRight((header.ToJsonString().Length + 7) / 8 * 8));
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. bytes.AsSpan(8 + headerLength)]);
        var read = TrainingCheckpoint.Read(path, Layout);
        Assert.Equal((1L, 2, 3), (read.Version, read.Epoch, read.Round));
    }

    [Fact]
    public void An_edited_job_id_does_not_decide_which_run_a_resume_continues()
    {
        // The job of the checkpoint written last picks the run a cluster resume continues. It was read without the header's
        // checksum, so an edited job_id in the newest file named a run that never existed (or another run).
        var store = new CheckpointStore(_directory, keep: 5);
        TrainingCheckpoint Of(long version, string job) => new(new ParameterVector(Layout, [1, 2, 3, 4, 5, 6, -1, -2, version]), [],
            OptimizerKind.Sgd, version, version, epoch: 1, round: (int)version, shardSeed: 7, workers: 2, batchSizePerWorker: 50, jobId: job);
        var older = store.Save(Of(1, "run-a"));
        File.SetLastWriteTimeUtc(older, DateTime.UtcNow.AddMinutes(-5));
        var newer = store.Save(Of(2, "run-b"));
        Assert.Equal("run-b", store.LastWrittenJobId(Layout));

        EditHeader(newer, "\"run-b\"", "\"run-".Length, 'c');
        Assert.Equal("run-a", store.LastWrittenJobId(Layout));
    }

    private static TrainingCheckpoint OfJob(long version, string job) => new(new ParameterVector(Layout, [1, 2, 3, 4, 5, 6, -1, -2, version]), [],
        OptimizerKind.Sgd, version, version, epoch: 1, round: (int)version, shardSeed: 7, workers: 2, batchSizePerWorker: 50, jobId: job);

    /// <summary>The write time a checkpoint records (written_at), as a UTC DateTime.</summary>
    private static DateTime RecordedWriteTime(string path) =>
        DateTime.ParseExact(SafeTensors.ReadMetadata(path)[TrainingCheckpoint.WrittenAtKey], TrainingCheckpoint.WrittenAtFormat,
            System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal);

    /// <summary>
    /// Rewrites a checkpoint as one written before written_at existed: the key removed and the header checksum recomputed
    /// over the remaining entries, as that version wrote it; the tensors are kept byte for byte.
    /// </summary>
    private static void AsWrittenBeforeWriteTimes(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BitConverter.ToUInt64(bytes);
        var header = System.Text.Json.Nodes.JsonNode.Parse(bytes.AsSpan(8, headerLength))!.AsObject();
        var metadata = header["__metadata__"]!.AsObject();
        Assert.True(metadata.Remove(TrainingCheckpoint.WrittenAtKey));
        var entries = metadata.ToDictionary(e => e.Key, e => e.Value!.GetValue<string>(), StringComparer.Ordinal);
        metadata[SafeTensors.MetadataSha256Key] = SafeTensors.MetadataDigest(entries);
        var text = header.ToJsonString();
        var json = System.Text.Encoding.UTF8.GetBytes(text.PadRight((text.Length + 7) / 8 * 8));
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. bytes.AsSpan(8 + headerLength)]);
    }

    /// <summary>
    /// A folder copied without its times (cp -r without -p, rsync without -t, a restore from backup) gives its files new
    /// times in whatever order the copy took them. The run written last, and the files pruning keeps, were decided by those
    /// times, so such a copy resumed the other run of the same model and pruned the current run's files first.
    /// </summary>
    [Fact]
    public void A_folder_copied_without_its_times_still_names_and_keeps_the_run_written_last()
    {
        var store = new CheckpointStore(_directory, keep: 2);
        var runA = store.Save(OfJob(9, "run-a")); // an earlier run, at a higher version
        var runB = store.Save(OfJob(1, "run-b"));
        Assert.True(RecordedWriteTime(runB) > RecordedWriteTime(runA));
        // The copy took run B's file first: run A's is now the newer by file time.
        File.SetLastWriteTimeUtc(runB, DateTime.UtcNow.AddHours(-1));
        File.SetLastWriteTimeUtc(runA, DateTime.UtcNow.AddMinutes(-1));
        Assert.Equal("run-b", store.LastWrittenJobId(Layout));

        // Run B goes on in the copy: pruning keeps its two files, not run A's, newer by file time.
        var next = store.Save(OfJob(2, "run-b"));
        Assert.Equal([next, runB], store.List());
        Assert.Equal("run-b", store.LastWrittenJobId(Layout));
    }

    /// <summary>
    /// A standby parameter server that took a job over writes its checkpoints with its own clock, which may be behind the
    /// active node's. Ordered by the recorded times alone, pruning then removed the job's newest checkpoint (the standby's
    /// first) and kept an older one of the active node, so a resume would go back.
    /// </summary>
    [Fact]
    public void Pruning_keeps_a_jobs_newest_versions_although_another_nodes_clock_recorded_them_earlier()
    {
        var store = new CheckpointStore(_directory, keep: 2);
        store.Save(OfJob(1, "job"));
        var second = store.Save(OfJob(2, "job"));
        // The standby's first checkpoint of the job, its clock a minute behind the active node's.
        var taken = Path.Combine(_directory, CheckpointStore.FileName(3, 1, 3));
        OfJob(3, "job").Write(taken, RecordedWriteTime(second).AddMinutes(-1));
        var fourth = new CheckpointStore(_directory, keep: 2).Save(OfJob(4, "job"));
        Assert.Equal([fourth, taken], store.List());
    }

    [Fact]
    public void A_checkpoint_written_before_write_times_were_recorded_reads_and_is_dated_by_its_file_time()
    {
        var store = new CheckpointStore(_directory, keep: 5);
        var runA = store.Save(OfJob(1, "run-a"));
        var runB = store.Save(OfJob(2, "run-b"));
        Assert.NotNull(TrainingCheckpoint.Read(runA, Layout).WrittenAt);
        AsWrittenBeforeWriteTimes(runA);
        AsWrittenBeforeWriteTimes(runB);
        var read = TrainingCheckpoint.Read(runA, Layout);
        Assert.Equal(("run-a", 1L, (DateTimeOffset?)null), (read.JobId, read.Version, read.WrittenAt));

        File.SetLastWriteTimeUtc(runA, DateTime.UtcNow.AddMinutes(-1));
        File.SetLastWriteTimeUtc(runB, DateTime.UtcNow.AddMinutes(-5));
        Assert.Equal("run-a", store.LastWrittenJobId(Layout));
        File.SetLastWriteTimeUtc(runB, DateTime.UtcNow);
        Assert.Equal("run-b", store.LastWrittenJobId(Layout));

        // A checkpoint of this version beside them is dated by the time it records, the old ones by their file times.
        var runC = store.Save(OfJob(3, "run-c"));
        File.SetLastWriteTimeUtc(runC, DateTime.UtcNow.AddHours(-1));
        File.SetLastWriteTimeUtc(runB, RecordedWriteTime(runC).AddSeconds(-1));
        Assert.Equal("run-c", store.LastWrittenJobId(Layout));
        File.SetLastWriteTimeUtc(runB, RecordedWriteTime(runC).AddSeconds(1));
        Assert.Equal("run-b", store.LastWrittenJobId(Layout));
    }

    [Fact]
    public void An_edited_write_time_is_a_checksum_error_and_does_not_decide_which_run_a_resume_continues()
    {
        var store = new CheckpointStore(_directory, keep: 5);
        store.Save(OfJob(1, "run-a"));
        var newer = store.Save(OfJob(2, "run-b"));
        var written = SafeTensors.ReadMetadata(newer)[TrainingCheckpoint.WrittenAtKey];
        Assert.Matches(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$", written);
        // Run B's file dated a year back, which a resume of the copied folder would then count as written first.
        EditHeader(newer, $"\"{written}\"", 4, (char)(written[3] - 1));
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(newer, Layout));
        Assert.StartsWith(newer + ": checksum mismatch: the header's metadata has SHA-256 ", error.Message);
        Assert.Contains("The header was edited or is corrupt", error.Message);
        Assert.Equal("run-a", store.LastWrittenJobId(Layout));
    }

    [Fact]
    public void A_renamed_checkpoint_is_skipped_as_its_name_tells_another_position_than_its_header()
    {
        var store = new CheckpointStore(_directory, keep: 5);
        store.Save(Sample(3));
        var written = store.Save(Sample(6, epoch: 2, round: 5));
        var renamed = Path.Combine(_directory, CheckpointStore.FileName(9, 2, 8));
        File.Move(written, renamed);
        var search = store.FindNewestValid(Layout);
        Assert.Equal(3, search.Checkpoint!.Version);
        var skipped = Assert.Single(search.Skipped);
        Assert.Equal(renamed, skipped.Path);
        Assert.Equal("its name says version 9, epoch 2, round 8, but its header says version 6, epoch 2, round 5: the file was renamed. " +
                     $"Give it its own name back ({CheckpointStore.FileName(6, 2, 5)}) or remove it.", skipped.Reason);
    }

    [Fact]
    public void Another_model_is_refused_by_its_fingerprint()
    {
        var path = Path.Combine(_directory, "c.safetensors");
        Sample(1).Write(path);
        var other = new ParameterLayout([("0.weight", [2, 3]), ("0.bias", [3]), ("1.weight", [1, 3])]);
        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path, other));
        // The tensors that differ, not two fingerprints.
        Assert.Equal($"{path}: the checkpoint holds another model: 0.weight is [3, 2] in it and [2, 3] here; 1.weight [1, 3] is not in it. " +
            "Resume with the config that wrote it.", error.Message);

        // The same tensors with the weight frozen (Model:Freeze): named as such, with the trainable counts the state shows.
        var frozen = new ParameterLayout([("0.weight", [3, 2], Core.Layers.ParameterRole.Weight, true), ("0.bias", [3], Core.Layers.ParameterRole.Bias, false)]);
        error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path, frozen));
        Assert.Equal($"{path}: the checkpoint holds another model: the same tensors, but another set of them is frozen (Model:Freeze): its run trained " +
            "9 weights, this config trains 3. Resume with the checkpoint's Model:Freeze, or fine-tune its run's model with this one (disttrain finetune).", error.Message);
    }

    [Fact]
    public void The_store_keeps_the_newest_N_and_removes_abandoned_temporary_files_but_not_one_being_written()
    {
        var store = new CheckpointStore(_directory, keep: 3);
        // Left by writers that crashed two hours ago, in the old and the current naming; and one written a moment ago,
        // which may be another writer's in flight.
        var abandoned = new[] { CheckpointStore.FileName(99, 9, 0) + ".tmp", CheckpointStore.FileName(98, 9, 0) + ".4242-0badf00d.tmp" };
        foreach (var name in abandoned)
        {
            File.WriteAllText(Path.Combine(_directory, name), "crashed mid-write");
            File.SetLastWriteTimeUtc(Path.Combine(_directory, name), DateTime.UtcNow.AddHours(-2));
        }
        var inFlight = Path.Combine(_directory, CheckpointStore.FileName(97, 9, 0) + ".4243-12345678.tmp");
        File.WriteAllText(inFlight, "being written");
        for (var version = 1; version <= 5; version++) store.Save(Sample(version, epoch: 1, round: version));
        Assert.Equal([5L, 4L, 3L], store.List().Select(p => TrainingCheckpoint.Read(p, Layout).Version));
        Assert.Equal([inFlight], Directory.GetFiles(_directory, "*.tmp"));
    }

    [Fact]
    public void A_second_hold_on_a_checkpoint_directory_is_refused_naming_it_until_the_first_is_released()
    {
        var directory = Path.Combine(_directory, "job");
        using (var first = CheckpointDirectoryLock.Acquire(directory))
        {
            Assert.True(Directory.Exists(directory));
            var refused = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(directory));
            Assert.True(refused.InUse);
            Assert.StartsWith($"Checkpoint:Directory '{directory}' is in use by another running job", refused.Message);
            Assert.Contains("Give this job its own Checkpoint:Directory", refused.Message);
            // The holder's store writes and prunes beside the lock file, which is never listed as a checkpoint.
            var store = new CheckpointStore(directory, keep: 1);
            store.Save(Sample(1));
            store.Save(Sample(2));
            Assert.Equal([Path.Combine(directory, CheckpointStore.FileName(2, 2, 3))], store.List());
            Assert.True(File.Exists(Path.Combine(directory, CheckpointDirectoryLock.FileName)));
        }
        using var again = CheckpointDirectoryLock.Acquire(directory);
        Assert.Equal(directory, again.Directory);
    }

    [Fact]
    public void A_checkpoint_file_name_gives_where_a_resume_continues()
    {
        Assert.Equal((96L, 2, 0), CheckpointStore.PositionOf(Path.Combine(_directory, CheckpointStore.FileName(96, 2, 0))));
        Assert.Equal((1_234_567L, 12, 345), CheckpointStore.PositionOf(CheckpointStore.FileName(1_234_567, 12, 345)));
        Assert.Null(CheckpointStore.PositionOf("model.safetensors"));
        Assert.Null(CheckpointStore.PositionOf("checkpoint-v99999999999999999999-e0001-r000000.safetensors")); // no long holds it
    }

    [Fact]
    public void A_checkpoint_directory_that_cannot_be_created_is_an_error_naming_its_lock_file()
    {
        var file = Path.Combine(_directory, "a-file");
        File.WriteAllText(file, "not a folder");
        // Below a file: named, where .NET said only "Could not find a part of the path".
        var error = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(Path.Combine(file, "checkpoints")));
        Assert.False(error.InUse);
        Assert.Equal($"Checkpoint:Directory '{Path.Combine(file, "checkpoints")}' is below {file}, which is a file, not a folder, so it cannot be created. " +
            "Give a folder for the checkpoints (it is created if missing), or move the file away.", error.Message);
        // A folder that cannot be made for another reason: the lock file named, with the system's reason.
        var proc = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire("/proc/disttrain-no-such-folder"));
        Assert.StartsWith($"Could not create the checkpoint lock file {Path.Combine("/proc/disttrain-no-such-folder", CheckpointDirectoryLock.FileName)}", proc.Message);
        // The file itself given as the folder: said in those words.
        Assert.Equal($"Checkpoint:Directory '{file}' is a file, not a folder. Give a folder for the checkpoints (it is created if missing).",
            Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(file)).Message);
        // A resume from a folder that does not exist takes no lock and creates nothing: the resume's own error names the folder.
        var missing = Path.Combine(_directory, "missing");
        Assert.Null(CheckpointDirectoryLock.For(new CheckpointOptions { Directory = missing, Resume = true }));
        Assert.False(Directory.Exists(missing));
        Assert.Null(CheckpointDirectoryLock.For(new CheckpointOptions()));
    }

    /// <summary>
    /// The start-up check of a checkpoint folder (parameter-server nodes, before they wait for workers) refuses one that cannot be
    /// created or written, naming it, and passes one another job holds (a standby checks the folder of the active node, whose
    /// lock it must leave alone) without taking the lock or leaving a file.
    /// </summary>
    [Fact]
    public void The_start_up_check_refuses_a_folder_that_cannot_be_written_and_leaves_a_held_lock_alone()
    {
        var file = Path.Combine(_directory, "a-file");
        File.WriteAllText(file, "not a folder");
        var below = Path.Combine(file, "checkpoints");
        var error = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = below }));
        Assert.False(error.InUse);
        Assert.Equal($"Checkpoint:Directory '{below}' is below {file}, which is a file, not a folder, so it cannot be created. " +
            "Give a folder for the checkpoints (it is created if missing), or move the file away.", error.Message);
        // Another reason: the system's, with the folder named.
        var proc = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = "/proc/disttrain-no-such-folder" }));
        Assert.StartsWith("Could not create Checkpoint:Directory '/proc/disttrain-no-such-folder': ", proc.Message);
        Assert.EndsWith("Check Checkpoint:Directory and its permissions.", proc.Message);
        Assert.Equal($"Checkpoint:Directory '{file}' is a file, not a folder. Give a folder for the checkpoints (it is created if missing).",
            Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = file })).Message);

        var held = Path.Combine(_directory, "held");
        using (CheckpointDirectoryLock.Acquire(held))
        {
            CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = held });
            Assert.True(Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(held)).InUse); // still held
            Assert.Equal([Path.Combine(held, CheckpointDirectoryLock.FileName)], Directory.GetFileSystemEntries(held));
        }
        // Created when missing, as the job would; off, or a resume from a folder that does not exist, checks nothing.
        var created = Path.Combine(_directory, "new", "checkpoints");
        CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = created });
        Assert.Empty(Directory.GetFileSystemEntries(created));
        var missing = Path.Combine(_directory, "missing");
        CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = missing, Resume = true });
        CheckpointDirectoryLock.CheckWritable(new CheckpointOptions());
        Assert.False(Directory.Exists(missing));
    }

    /// <summary>
    /// A folder holding an earlier job's lock file that can no longer be written (a read-only mount): the lock file still opens
    /// for reading, and train used to start and fail at its first checkpoint, after a step's training. Taking the folder now
    /// checks that a file can be created in it. Made read-only by a read-only bind mount as root (permissions do not stop
    /// root), or by taking the write permission otherwise; skipped where neither works.
    /// </summary>
    [SkippableFact]
    public void Taking_a_folder_whose_lock_file_exists_but_that_cannot_be_written_is_refused_naming_it()
    {
        var directory = Path.Combine(_directory, "read-only");
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, CheckpointDirectoryLock.FileName), "");
        var root = Environment.UserName == "root";
        Skip.If(OperatingSystem.IsWindows(), "read-only folders are made with a bind mount or the Unix permissions");
        bool Run(string command, params string[] arguments)
        {
            using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(command, arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            process.WaitForExit(10_000);
            return process.HasExited && process.ExitCode == 0;
        }
        var mounted = false;
        try
        {
            if (root)
            {
                mounted = Run("mount", "--bind", directory, directory);
                Skip.IfNot(mounted && Run("mount", "-o", "remount,ro,bind", directory), "this root process cannot make a read-only bind mount");
            }
            else if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            var error = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(directory).Dispose()); // released if taken
            Assert.False(error.InUse);
            Assert.StartsWith($"Could not write in Checkpoint:Directory '{directory}': ", error.Message);
            Assert.EndsWith("Check Checkpoint:Directory and its permissions: the checkpoints and the lock file .disttrain.lock are written there.", error.Message);
            // The parameter-server node's start-up check says the same.
            Assert.StartsWith($"Could not write in Checkpoint:Directory '{directory}': ",
                Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.CheckWritable(new CheckpointOptions { Directory = directory })).Message);
        }
        finally
        {
            if (mounted && !Run("umount", directory)) Run("umount", "-l", directory);
            if (!root && !OperatingSystem.IsWindows()) File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    /// <summary>
    /// A write whose temporary name is taken (another writer's file of the same name) fails with an IOException and leaves
    /// that file and the target as they were; it used to delete the other writer's file on its way out.
    /// </summary>
    [Fact]
    public void A_write_whose_temporary_name_is_taken_fails_and_leaves_the_other_file_alone()
    {
        var path = Path.Combine(_directory, "c.safetensors");
        Sample(1).Write(path);
        var before = File.ReadAllBytes(path);
        var taken = AtomicFile.TemporaryPath(path);
        File.WriteAllText(taken, "another writer's");
        Assert.ThrowsAny<IOException>(() => AtomicFile.Write(path, stream => stream.WriteByte(1), taken));
        Assert.Equal("another writer's", File.ReadAllText(taken));
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    /// <summary>
    /// A checkpoint folder that takes no new files (/proc): the error names the checkpoint and its folder, not the temporary
    /// file the write goes through (it was "Could not find file '/proc/checkpoint-....safetensors.4711-0c1d2e3f.tmp'").
    /// </summary>
    [Fact]
    public void A_checkpoint_that_cannot_be_created_is_named_not_its_temporary_file()
    {
        if (!OperatingSystem.IsLinux()) return;
        var path = Path.Combine("/proc", CheckpointStore.FileName(1, 2, 3));
        var error = Assert.Throws<CheckpointWriteException>(() => new CheckpointStore("/proc", keep: 1).Save(Sample(1)));
        Assert.Equal($"Could not write checkpoint {path}: Could not create '{path}': the folder /proc takes no new files. " +
            "Check Checkpoint:Directory and the free space.", error.Message);
    }

    /// <summary>
    /// Two stores on one folder (two jobs given the same Checkpoint:Directory) save checkpoints of the same names at the
    /// same time: neither write fails, no temporary file is left, and each file holds one whole checkpoint. With one
    /// temporary name per target, the two writers opened, truncated and renamed each other's file.
    /// </summary>
    [Fact]
    public void Concurrent_writers_of_the_same_checkpoint_names_never_fail_and_leave_whole_files()
    {
        var stores = new[] { new CheckpointStore(_directory, keep: 50), new CheckpointStore(_directory, keep: 50) };
        Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, k =>
        {
            for (var version = 1; version <= 40; version++) stores[k].Save(Sample(version, epoch: 1, round: version));
        });
        Assert.Equal(40, stores[0].List().Count);
        Assert.All(stores[0].List(), path => Assert.InRange(TrainingCheckpoint.Read(path, Layout).Version, 1, 40));
        Assert.Empty(Directory.GetFiles(_directory, "*.tmp"));
    }

    [Fact]
    public void A_leftover_temporary_file_is_never_chosen()
    {
        var store = new CheckpointStore(_directory, keep: 3);
        store.Save(Sample(4));
        // A newer checkpoint whose write was interrupted before the rename.
        var newer = Path.Combine(_directory, CheckpointStore.FileName(8, 3, 0));
        Sample(8).Write(newer);
        File.Move(newer, newer + ".tmp");
        var search = store.FindNewestValid(Layout);
        Assert.Equal(4, search.Checkpoint!.Version);
        Assert.Empty(search.Skipped);
    }

    /// <summary>
    /// Saves checkpoints at versions 3 and 6, rewrites the newest one's bytes with <paramref name="damage"/>, and checks that
    /// the search falls back to version 3 with the newest as its only skipped checkpoint; returns that skip's reason.
    /// </summary>
    private string NewestSkippedAfter(Func<byte[], byte[]> damage)
    {
        var store = new CheckpointStore(_directory, keep: 5);
        store.Save(Sample(3));
        var newest = store.Save(Sample(6));
        File.WriteAllBytes(newest, damage(File.ReadAllBytes(newest)));
        var search = store.FindNewestValid(Layout);
        Assert.Equal(3, search.Checkpoint!.Version);
        var skipped = Assert.Single(search.Skipped);
        Assert.Equal(newest, skipped.Path);
        return skipped.Reason;
    }

    [Fact]
    public void A_truncated_newest_checkpoint_is_skipped_for_the_previous_one_with_the_reason() =>
        Assert.Contains("truncated", NewestSkippedAfter(bytes => bytes[..^7]));

    [Fact]
    public void A_newest_checkpoint_with_a_changed_header_byte_is_skipped_as_corrupt_or_not_a_checkpoint()
    {
        var reason = NewestSkippedAfter(bytes =>
        {
            bytes[bytes.AsSpan().IndexOf("__metadata__"u8) + 10] = (byte)'X';
            return bytes;
        });
        // Before: "tensor '__metadataX_' has no dtype string." alone.
        Assert.Equal("tensor '__metadataX_' has no dtype string. The file is corrupt or not a checkpoint.", reason);
    }

    [Fact]
    public void Checkpoint_settings_are_validated_with_the_key_and_value()
    {
        var options = new TrainingOptions { Checkpoint = { Keep = 0, EverySteps = -1, Resume = true } };
        var problems = TrainingOptionsValidator.Validate(options, checkDataDirectory: false);
        Assert.Contains("Checkpoint:Keep = 0 is out of range: allowed [1, 1000].", problems);
        Assert.Contains("Checkpoint:EverySteps = -1 is out of range: allowed [0, 1000000000].", problems);
        Assert.Contains(problems, p => p.StartsWith("Checkpoint:Resume = true needs Checkpoint:Directory", StringComparison.Ordinal));
        var typo = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(null,
            new Dictionary<string, string?> { ["Checkpoint:EveryStep"] = "5" }, checkDataDirectory: false, environment: new Dictionary<string, string?>()));
        Assert.Contains("Did you mean 'Checkpoint:EverySteps'?", typo.Message);
    }
}

/// <summary>A stopped and resumed single-node run ends on the same weights as an uninterrupted one with the same seed.</summary>
public class ResumeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-resume-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static ModelOptions WithDropout() => new()
    {
        InputSize = 784,
        Layers =
        [
            new LayerOptions { Type = LayerTypes.Dense, Units = 32 },
            new LayerOptions { Type = LayerTypes.ReLU },
            new LayerOptions { Type = LayerTypes.Dropout, Rate = 0.2 },
            new LayerOptions { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    /// <summary>2 workers x batch 50 over 1,000 samples: 10 steps per epoch.</summary>
    private static TrainingOptions Options(ModelOptions model, int epochs, string checkpoints = "", int everySteps = 0, bool resume = false,
        Action<OptimizerOptions>? optimizer = null)
    {
        var options = TestData.Options(model, workers: 2, batch: 50, epochs: epochs);
        optimizer?.Invoke(options.Optimizer);
        options.Checkpoint = new CheckpointOptions { Directory = checkpoints, EverySteps = everySteps, Keep = 100, Resume = resume };
        return options;
    }

    private static async Task<TrainingResult> Run(TrainingOptions options, RecordingObserver? observer = null, Action<string>? log = null)
    {
        var data = TestData.Normalized();
        return await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, observer, log: log).WithTestTimeout();
    }

    [Fact]
    public async Task Stopping_after_epoch_2_and_resuming_to_epoch_4_matches_an_uninterrupted_run_with_momentum_and_dropout()
    {
        var model = WithDropout();
        var uninterrupted = await Run(Options(model, epochs: 4));
        var first = await Run(Options(model, epochs: 2, checkpoints: _directory));
        Assert.Equal(20, first.Version);
        Assert.Equal([10L, 20L], new CheckpointStore(_directory, 3).List().Select(p => TrainingCheckpoint.Read(p, first.FinalWeights.Layout).Version).Order());
        var lines = new List<string>();
        var resumed = await Run(Options(model, epochs: 4, checkpoints: _directory, resume: true), log: lines.Add);
        Assert.Equal(40, resumed.Version);
        Assert.Equal([3, 4], resumed.Epochs.Select(e => e.Epoch));
        Assert.Contains(lines, l => l.StartsWith("Resuming from checkpoint " + Path.Combine(_directory, "checkpoint-v0000000020-e0003-r000000.safetensors"), StringComparison.Ordinal));
        // The same operations in the same order on the same data: bit-identical, as docs/reliability.md states.
        Compare.Identical(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, "weights after 2 + 2 epochs");
        Assert.Equal(uninterrupted.Epochs[3].TestAccuracy, resumed.Epochs[1].TestAccuracy);
        Assert.Equal(uninterrupted.Epochs[3].TestLoss, resumed.Epochs[1].TestLoss);
    }

    /// <summary>
    /// A resume in the middle of an epoch used to draw other dropout masks for the rest of that epoch (each replica's
    /// generator was reseeded only at epoch starts and advanced with every minibatch), so the run went on to other weights.
    /// The masks are now a function of (seed, epoch, sample, layer), which the checkpoint's position restores.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task Resuming_mid_epoch_with_dropout_matches_the_uninterrupted_run_bit_for_bit(int workers)
    {
        var model = WithDropout();
        TrainingOptions With(string checkpoints, int everySteps = 0, bool resume = false)
        {
            var options = Options(model, epochs: 3, checkpoints: checkpoints, everySteps: everySteps, resume: resume);
            options.Training.Workers = workers;
            return options;
        }
        var all = Path.Combine(_directory, "all");
        var uninterrupted = await Run(With(all, everySteps: 3));

        // Only the first checkpoint inside epoch 2 survives the "crash".
        var midEpoch = new CheckpointStore(all, 100).List().Where(p => CheckpointStore.PositionOf(p) is { Epoch: 2, Round: > 0 })
            .OrderBy(p => CheckpointStore.PositionOf(p)!.Value.Version).First();
        var kept = Path.Combine(_directory, "kept");
        Directory.CreateDirectory(kept);
        File.Copy(midEpoch, Path.Combine(kept, Path.GetFileName(midEpoch)));
        var resumed = await Run(With(kept, resume: true));

        Assert.Equal(uninterrupted.Version, resumed.Version);
        Assert.Equal([2, 3], resumed.Epochs.Select(e => e.Epoch));
        Compare.Identical(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, $"weights after resuming from {Path.GetFileName(midEpoch)}");
        Assert.Equal(uninterrupted.Epochs[1].TrainLoss, resumed.Epochs[0].TrainLoss);
        Assert.Equal(uninterrupted.Epochs[2].TestAccuracy, resumed.Epochs[1].TestAccuracy);
        // The resumed epoch's throughput counts only the samples trained after the checkpoint (its samples/s was credited
        // with the whole epoch's, about 12 times too high in a cluster run resumed late in an epoch).
        var before = TrainingCheckpoint.Read(midEpoch, ModelFactory.Build(model).Layout).EpochSamples;
        Assert.True(before > 0);
        Assert.Equal((uninterrupted.Epochs[1].TrainSamples, uninterrupted.Epochs[1].TrainSamples - before),
            (resumed.Epochs[0].TrainSamples, resumed.Epochs[0].SamplesTrainedThisRun));
        Assert.Equal(resumed.Epochs[0].SamplesTrainedThisRun!.Value / resumed.Epochs[0].TrainSeconds, resumed.Epochs[0].SamplesPerSecond, 6);
        Assert.Equal(resumed.Epochs[1].TrainSamples, resumed.Epochs[1].SamplesTrainedThisRun);
    }

    [Fact]
    public async Task Resuming_mid_epoch_with_Adam_and_a_cosine_schedule_matches_the_uninterrupted_run()
    {
        var model = TestData.Mlp(32, 10);
        void Adam(OptimizerOptions o)
        {
            o.Kind = OptimizerKind.Adam;
            o.LearningRate = 0.003;
            o.Schedule = new LearningRateScheduleOptions { Kind = LearningRateScheduleKind.Cosine, WarmupSteps = 5 };
        }
        var all = Path.Combine(_directory, "all");
        var reference = new RecordingObserver();
        var uninterrupted = await Run(Options(model, epochs: 4, checkpoints: all, everySteps: 3, optimizer: Adam), reference);
        // Every 3rd step (13: 3 to 39) and every epoch end (10, 20, 40; 30 is both): 16 files.
        Assert.Equal(16, new CheckpointStore(all, 100).List().Count);

        // Only the checkpoint after step 24 (epoch 3, before its round 4) survives the "crash".
        var kept = Path.Combine(_directory, "kept");
        Directory.CreateDirectory(kept);
        var name = CheckpointStore.FileName(24, 3, 4);
        File.Copy(Path.Combine(all, name), Path.Combine(kept, name));
        var observer = new RecordingObserver();
        var resumed = await Run(Options(model, epochs: 4, checkpoints: kept, resume: true, optimizer: Adam), observer);

        Assert.Equal(40, resumed.Version);
        Assert.Equal(16, observer.LearningRates.Count); // steps 25..40
        Assert.Equal(reference.LearningRates.Skip(24), observer.LearningRates);
        Compare.Identical(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, "weights after resuming at step 24");
        // Epoch 3's training loss counts the 4 rounds run before the interruption (carried in the checkpoint), summed in the same order.
        Assert.Equal(uninterrupted.Epochs[2].TrainSamples, resumed.Epochs[0].TrainSamples);
        Assert.True(double.IsFinite(resumed.Epochs[0].TrainLoss));
        Assert.Equal(uninterrupted.Epochs[2].TrainLoss, resumed.Epochs[0].TrainLoss);
    }

    [Fact]
    public async Task A_truncated_newest_checkpoint_is_logged_by_name_and_the_run_resumes_from_the_previous_one()
    {
        var model = TestData.Mlp(32, 10);
        var uninterrupted = await Run(Options(model, epochs: 3));
        await Run(Options(model, epochs: 2, checkpoints: _directory, everySteps: 4));
        var store = new CheckpointStore(_directory, 100);
        var newest = store.List()[0];
        Assert.EndsWith(CheckpointStore.FileName(20, 3, 0), newest);
        File.WriteAllBytes(newest, File.ReadAllBytes(newest)[..1000]);

        var lines = new List<string>();
        var resumed = await Run(Options(model, epochs: 3, checkpoints: _directory, resume: true), log: lines.Add);
        Assert.StartsWith($"Skipping checkpoint {newest}: ", lines[0]);
        Assert.Single(Regex.Matches(lines[0], Regex.Escape(newest))); // named once
        Assert.Contains("truncated", lines[0]);
        Assert.StartsWith("Resuming from checkpoint " + Path.Combine(_directory, CheckpointStore.FileName(16, 2, 6)), lines[1]);
        Assert.Equal(30, resumed.Version);
        Compare.Identical(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, "weights after falling back to step 16");
    }

    [Fact]
    public async Task A_run_given_a_checkpoint_directory_another_job_holds_is_refused_before_training_and_writes_nothing()
    {
        var options = Options(TestData.Mlp(8, 10), epochs: 1, checkpoints: _directory);
        using (CheckpointDirectoryLock.Acquire(_directory))
        {
            var refused = await Assert.ThrowsAsync<CheckpointDirectoryException>(() => Run(options));
            Assert.True(refused.InUse);
            Assert.Empty(new CheckpointStore(_directory, 100).List());
        }
        // Released: the same run now writes its checkpoint, and releases the folder at its end for the next one.
        var first = await Run(options);
        var second = await Run(options);
        Assert.Equal(first.Version, second.Version);
        Assert.Single(new CheckpointStore(_directory, 100).List());
    }

    /// <summary>
    /// A resume onto other training data (here half of it, as a changed Data:TrainLimit gives) used to start: mid-epoch
    /// it planned shards the checkpoint's position does not fit and stalled until the stall timeout; at an epoch
    /// boundary it went on silently with another data order. The checkpoint records the run's training samples, and a
    /// resume with another count is refused before training, naming both.
    /// </summary>
    [Fact]
    public async Task Resuming_onto_another_number_of_training_samples_is_refused_naming_both_counts()
    {
        var model = TestData.Mlp(8, 10);
        await Run(Options(model, epochs: 1, checkpoints: _directory, everySteps: 4));
        var path = new CheckpointStore(_directory, 100).List()[0];
        Assert.Equal(1000, TrainingCheckpoint.Read(path, ModelFactory.Build(model).Layout).TrainSamples);
        var data = TestData.Normalized();
        var refused = await Assert.ThrowsAsync<CheckpointResumeException>(() =>
            SingleNodeTrainer.RunAsync(Options(model, epochs: 2, checkpoints: _directory, resume: true), data.Train.Take(500), data.Test).WithTestTimeout());
        Assert.Equal($"Checkpoint {path} does not fit the config: the data gives 500 training samples (after Data:TrainLimit, Data:Classes and the validation " +
            "split), the checkpoint's run had 1,000. They fix the data order, the samples and what the checkpoint's position means, so resume with the checkpoint's values.",
            refused.Message);
        // The same data resumes.
        Assert.Equal(20, (await Run(Options(model, epochs: 2, checkpoints: _directory, resume: true))).Version);
    }

    /// <summary>
    /// A resume with another input normalization trained on silently (a user's Data:Normalization None on a Global run:
    /// train loss 0.555 to 0.92, accuracy 77.4% to 72.0%). The checkpoint records the data settings, and a resume that
    /// changes one is refused before training, naming the key and both values; the same settings resume.
    /// </summary>
    [Fact]
    public async Task Resuming_with_another_normalization_or_data_split_is_refused_naming_the_setting_and_both_values()
    {
        var model = TestData.Mlp(8, 10);
        var first = Options(model, epochs: 1, checkpoints: _directory, everySteps: 4);
        first.Data.Normalization = NormalizationKind.Global;
        await Run(first);
        var path = new CheckpointStore(_directory, 100).List()[0];
        Assert.Contains("\"Data:Normalization\":\"Global\"", TrainingCheckpoint.Read(path, ModelFactory.Build(model).Layout).DataSettings);
        var changed = Options(model, epochs: 2, checkpoints: _directory, resume: true);
        changed.Data.Normalization = NormalizationKind.None;
        changed.Data.ValidationFraction = 0.1;
        var refused = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(changed));
        Assert.Equal($"Checkpoint {path} does not fit the config: Data:Normalization = None, the checkpoint's is Global; " +
            "Data:ValidationFraction = 0.1, the checkpoint's is 0. They fix the data order, the samples and what the checkpoint's position means, " +
            "so resume with the checkpoint's values.", refused.Message);
        var same = Options(model, epochs: 2, checkpoints: _directory, resume: true);
        same.Data.Normalization = NormalizationKind.Global;
        Assert.Equal(20, (await Run(same)).Version);
    }

    /// <summary>
    /// A resume with another activation trained on silently: the weights' shapes are the same. The checkpoint records the
    /// layers as configured, and a resume that changes one is refused naming the layer and both settings; the same layers,
    /// written in other letter cases, resume.
    /// </summary>
    [Fact]
    public async Task Resuming_with_another_activation_is_refused_naming_the_layer()
    {
        var model = TestData.Mlp(8, 10);
        await Run(Options(model, epochs: 1, checkpoints: _directory, everySteps: 4));
        var path = new CheckpointStore(_directory, 100).List()[0];
        var sigmoid = TestData.Mlp(8, 10);
        var activation = sigmoid.Layers.FindIndex(l => l.Type == LayerTypes.ReLU);
        sigmoid.Layers[activation].Type = LayerTypes.Sigmoid;
        var refused = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(sigmoid, epochs: 2, checkpoints: _directory, resume: true)));
        // Only the setting that changed, under its configuration key (before: both layers as JSON, and a reason about data).
        Assert.Equal($"Checkpoint {path} does not fit the config: Model:Layers:{activation}:Type = sigmoid, the checkpoint's is relu. " +
            "The checkpoint's weights were trained in its run's layers and loss, so resume with the checkpoint's values; to train other layers " +
            "from its weights, fine-tune its run's model instead (disttrain finetune, or Model:Pretrained).", refused.Message);
        var lower = TestData.Mlp(8, 10);
        lower.Layers[activation].Type = "relu";
        Assert.Equal(20, (await Run(Options(lower, epochs: 2, checkpoints: _directory, resume: true))).Version);
    }

    [Fact]
    public async Task Resuming_from_an_empty_directory_is_an_error_naming_it()
    {
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(TestData.Mlp(8, 10), epochs: 1, checkpoints: _directory, resume: true)));
        Assert.Contains(Path.GetFullPath(_directory), error.Message);
        Assert.Contains("Drop --resume", error.Message);
    }

    /// <summary>
    /// A cluster resumed from a mid-epoch checkpoint with fewer workers than its epoch was planned for waits for them (that epoch
    /// resumes exactly only with them). It said only "waiting until 2 are ready (1 are)": it now says for how long
    /// (Cluster:ResumeWaitSeconds), and that it then goes on with the workers ready.
    /// </summary>
    [Fact]
    public void A_mid_epoch_resume_short_of_workers_says_what_it_waits_for_how_long_and_how_it_goes_on()
    {
        Assert.Equal("The checkpoint resumed from was written in the middle of epoch 2 (round 1), whose minibatches were planned for 4 workers: the job " +
            "waits up to 30 s (Cluster:ResumeWaitSeconds) until 4 are ready (2 are now), which resumes the epoch exactly, then goes on with the workers " +
            "ready, which train what the epoch's plan had left. Start worker nodes until 4 are ready to resume it exactly.",
            DistTrain.Cluster.Actors.JobHost.CheckpointWorkersWanted(2, 1, 4, 2, 30));
        Assert.StartsWith("The checkpoint resumed from was written in the middle of epoch 4 (round 13), whose minibatches were planned for 2 workers: the job " +
            "waits up to 5 s (Cluster:ResumeWaitSeconds) until 2 are ready (1 is now)", DistTrain.Cluster.Actors.JobHost.CheckpointWorkersWanted(4, 13, 2, 1, 5));
    }
}
