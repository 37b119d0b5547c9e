#!/usr/bin/python3
"""Cut the committed test subset from Debian's dataset-fashion-mnist package.

Takes the first TRAIN training and the first TEST test samples, unchanged, and writes them
as gzip IDX files with the same names as the full set, so the product's reader sees the same
format. Usage: make_subset.py [SOURCE_DIR] [OUT_DIR]
"""
import gzip, struct, sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = sys.argv[2] if len(sys.argv) > 2 else "fashion-mnist-subset"
TRAIN, TEST = 1000, 250


def cut(name, count):
    with gzip.open(f"{SRC}/{name}", "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    header = data[:4] + struct.pack(">" + "I" * ndim, count, *dims[1:])
    body = data[4 + 4 * ndim: 4 + 4 * ndim + count * per_item]
    # mtime=0 keeps the committed bytes reproducible
    with gzip.GzipFile(f"{OUT}/{name}", "wb", mtime=0) as f:
        f.write(header + body)


for prefix, count in (("train", TRAIN), ("t10k", TEST)):
    cut(f"{prefix}-images-idx3-ubyte.gz", count)
    cut(f"{prefix}-labels-idx1-ubyte.gz", count)
