#!/usr/bin/python3
"""PyTorch DistributedDataParallel baseline for docs/benchmarks.md: the same job as DistTrain's, on CPU.

N worker processes (torch.multiprocessing), gloo over loopback, one thread each by default; every worker trains
on its own fixed 1/N of the training set in shuffled minibatches, DDP averages the gradients, and each worker
applies SGD (momentum 0.9, weight decay = L2) to its replica. Pixels are divided by 255; layers use PyTorch's
default initialization.

  --model mlp   784-256-128-10 with ReLU (DistTrain: configs/fashion-mnist-mlp.json)
  --model cnn   conv 5x5 1->32, ReLU, max pool 2; conv 5x5 32->64, ReLU, max pool 2; dense 3136->256, ReLU,
                dense 10 (DistTrain: configs/bench/torch-ddp-cnn.json)

Prints one JSON line. samples_per_s is the training samples of all workers over the summed wall time of the
epochs' training loops (evaluation excluded), the quantity DistTrain's epoch line and summary.json report.

Needs Debian's python3-torch; the data is Debian's dataset-fashion-mnist (or any folder with the four IDX
files, e.g. tests/data/fashion-mnist-subset). OpenBLAS 0.3.21 picks its slow Prescott kernel on some
virtualized CPUs: set OPENBLAS_CORETYPE (empty, or a kernel such as SkylakeX) to choose.

  /usr/bin/python3 tests/baselines/torch_ddp_fashion.py --workers 2 --epochs 3 --batch 64 --model mlp
"""
import argparse
import gzip
import json
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(folder, name):
    """An IDX file (raw or .gz) as a numpy array of its declared shape."""
    path = os.path.join(folder, name)
    compressed = os.path.exists(path + ".gz")
    with (gzip.open(path + ".gz", "rb") if compressed else open(path, "rb")) as f:
        raw = f.read()
    dimensions = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * d:8 + 4 * d], "big") for d in range(dimensions)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def load(folder, train_limit):
    images = read_idx(folder, "train-images-idx3-ubyte").astype(np.float32) / 255.0
    labels = read_idx(folder, "train-labels-idx1-ubyte").astype(np.int64)
    if train_limit > 0:
        images, labels = images[:train_limit], labels[:train_limit]
    test_images = read_idx(folder, "t10k-images-idx3-ubyte").astype(np.float32) / 255.0
    test_labels = read_idx(folder, "t10k-labels-idx1-ubyte").astype(np.int64)
    as_nchw = lambda x: torch.from_numpy(x).reshape(-1, 1, 28, 28)
    return as_nchw(images), torch.from_numpy(labels), as_nchw(test_images), torch.from_numpy(test_labels)


def build(kind):
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))


def worker(rank, args, port):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.workers)
    torch.manual_seed(args.seed)  # the same initial weights on every replica
    train_x, train_y, test_x, test_y = load(args.data, args.train_limit)
    shard = len(train_x) // args.workers
    x, y = train_x[rank * shard:(rank + 1) * shard], train_y[rank * shard:(rank + 1) * shard]
    model = nn.parallel.DistributedDataParallel(build(args.model))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    shuffle = torch.Generator().manual_seed(args.seed * 1000 + rank)
    epoch_seconds, samples = [], 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(shard, generator=shuffle)
        for first in range(0, shard - args.batch + 1, args.batch):  # full minibatches only, so every step is synchronous
            batch = order[first:first + args.batch]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
            samples += len(batch)
        dist.barrier()
        epoch_seconds.append(time.perf_counter() - start)
    if rank == 0:
        model.eval()
        with torch.no_grad():
            accuracy = (model.module(test_x).argmax(1) == test_y).double().mean().item()
        print(json.dumps({
            "baseline": "pytorch-ddp-gloo", "torch": torch.__version__, "model": args.model, "workers": args.workers,
            "threads_per_worker": args.threads, "batch_per_worker": args.batch, "epochs": args.epochs,
            "train_samples": shard * args.workers, "epoch_s": [round(s, 3) for s in epoch_seconds],
            "samples_per_s": round(samples * args.workers / sum(epoch_seconds), 1),
            "test_accuracy": accuracy, "test_samples": len(test_y)}), flush=True)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="minibatch per worker (default 64)")
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"folder with the four IDX files (default {DEFAULT_DATA})")
    parser.add_argument("--train-limit", type=int, default=0, help="use the first N training samples (0: all)")
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f"--data {args.data}: no such folder. Install Debian's dataset-fashion-mnist or pass a folder with the IDX files.")
    if args.workers < 1 or args.batch < 1 or args.epochs < 1:
        sys.exit("--workers, --batch and --epochs take whole numbers from 1.")
    mp.spawn(worker, args=(args, free_port()), nprocs=args.workers, join=True)


if __name__ == "__main__":
    main()
