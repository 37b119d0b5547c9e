"""Writes Fashion-MNIST's IDX files as an image folder (torchvision's ImageFolder layout): OUT/train/<class>/<n>.png and
OUT/test/<class>/<n>.png, grayscale 28x28 PNGs, for the first TRAIN and TEST images of each split.

    python3 deploy/local/write-image-folder.py /usr/share/datasets/fashion-mnist OUT [TRAIN] [TEST]
"""
import gzip
import os
import struct
import sys

from PIL import Image

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dimensions = data[3]
    sizes = struct.unpack(">" + "I" * dimensions, data[4:4 + 4 * dimensions])
    return sizes, data[4 + 4 * dimensions:]


def find(directory, name):
    for candidate in (name + ".gz", name):
        if os.path.exists(os.path.join(directory, candidate)):
            return os.path.join(directory, candidate)
    sys.exit(f"{directory}: no {name}[.gz]; install Fashion-MNIST with 'apt-get install dataset-fashion-mnist'")


def write(directory, prefix, out, limit):
    (count, rows, columns), pixels = read_idx(find(directory, f"{prefix}-images-idx3-ubyte"))
    _, labels = read_idx(find(directory, f"{prefix}-labels-idx1-ubyte"))
    size = rows * columns
    for i in range(min(count, limit)):
        folder = os.path.join(out, CLASSES[labels[i]])
        os.makedirs(folder, exist_ok=True)
        Image.frombytes("L", (columns, rows), pixels[i * size:(i + 1) * size]).save(os.path.join(folder, f"{i:05d}.png"))
    return min(count, limit)


if __name__ == "__main__":
    source, out = sys.argv[1], sys.argv[2]
    train, test = (int(sys.argv[3]) if len(sys.argv) > 3 else 60000), (int(sys.argv[4]) if len(sys.argv) > 4 else 10000)
    written = write(source, "train", os.path.join(out, "train"), train), write(source, "t10k", os.path.join(out, "test"), test)
    print(f"wrote {written[0]} training and {written[1]} test images to {out}/train and {out}/test")
