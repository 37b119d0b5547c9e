#!/usr/bin/python3
"""Golden values for DistTrain's SGD path, produced by PyTorch (Debian's python3-torch, CPU).

Trains nn.Sequential(Linear(784,32), ReLU, Linear(32,16), ReLU, Linear(16,10)) with PyTorch's
default initialization (seed 0) for 10 steps of torch.optim.SGD(lr, momentum, weight_decay=L2),
plus an L1 term added to every gradient as l1 * sign(w), on minibatches of the committed
Fashion-MNIST subset (pixels / 255, no other normalization). Writes the initial weights, the
sample indices of every step, the loss of every step and the final weights to sgd_golden.json.
Tensors are base64 of little-endian float32, row-major, named as in the state_dict.
Run from this folder: /usr/bin/python3 make_sgd_golden.py
"""
import base64, gzip, json, struct
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "../data/fashion-mnist-subset"
# L2 and L1 are large enough that dropping either moves the weights by far more than the 1e-4 tolerance.
LR, MOMENTUM, L2, L1, BATCH, STEPS = 0.05, 0.9, 1e-2, 1e-3, 64, 10


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def b64(t):
    return base64.b64encode(t.detach().numpy().astype("<f4").tobytes()).decode()


def state(model):
    return {k: {"shape": list(v.shape), "data": b64(v)} for k, v in model.state_dict().items()}


torch.manual_seed(0)
x = torch.from_numpy(idx(f"{DATA}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0)
y = torch.from_numpy(idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
initial = state(model)
opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=L2)
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
steps, losses = [], []
for step in range(STEPS):
    batch = order[step * BATCH:(step + 1) * BATCH]
    opt.zero_grad()
    loss = F.cross_entropy(model(x[batch]), y[batch])
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.grad += L1 * torch.sign(p)
    opt.step()
    steps.append(batch.tolist())
    losses.append(loss.item())

with open("sgd_golden.json", "w") as f:
    json.dump({"torch": torch.__version__, "learning_rate": LR, "momentum": MOMENTUM, "l2": L2, "l1": L1,
               "batch_size": BATCH, "layers": [32, 16, 10], "steps": steps, "losses": losses,
               "initial": initial, "final": state(model)}, f)
print("losses", [round(l, 5) for l in losses])
