#!/usr/bin/python3
"""PyTorch <-> DistTrain interop for safetensors checkpoints (Debian's python3-torch, CPU; no safetensors package).

  /usr/bin/python3 torch_interop.py export OUT.safetensors OUT.json
      Builds a seeded small CNN nn.Sequential (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Conv2d, ReLU, Flatten, Linear,
      ReLU, Linear), runs ten training-mode forwards so BatchNorm's running statistics are non-trivial, and writes
      its state_dict to OUT.safetensors in the safetensors layout written by hand: an 8-byte little-endian header
      length, a JSON header mapping each name to {"dtype", "shape", "data_offsets"}, then the raw little-endian data.
      Float tensors are F32; num_batches_tracked is I64 with shape [], exactly as torch's state_dict holds it.
      OUT.json is the fixture: the layer config in DistTrain's terms ("layers": type, channels, kernel_size, padding,
      units, ...; "input_shape": [C, H, W]), a fixed input batch "x" and the evaluation-mode "logits".

  /usr/bin/python3 torch_interop.py check CHECKPOINT.safetensors FIXTURE.json
      Builds the torch network FIXTURE.json's "layers" describe, loads CHECKPOINT.safetensors (as DistTrain writes it:
      F32 tensors, no num_batches_tracked) with load_state_dict(strict=False), failing if any key other than
      num_batches_tracked is missing or unexpected, runs the fixture's "x" in evaluation mode and compares with its
      "logits". Exit code 0 when every logit is within 1e-4, else prints the largest difference and exits with 1.

Fixture tensors are {"shape", "data"}: base64 of little-endian float32, row-major; "x" is (N, C, H, W) and "logits"
(N, classes), which read column-major are DistTrain's [features, batch] matrices. Logits are computed in float64
from the float32 weights, so they are exact to float32 rounding.
"""
import base64, copy, json, struct, sys
import numpy as np
import torch
import torch.nn as nn

TOLERANCE = 1e-4
DTYPES = {"F32": (torch.float32, "<f4"), "F64": (torch.float64, "<f8"), "I64": (torch.int64, "<i8")}
LAYERS = [
    {"type": "Conv2D", "channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "BatchNorm"},
    {"type": "ReLU"},
    {"type": "MaxPool2D", "kernel_size": 2},
    {"type": "Conv2D", "channels": 6, "kernel_size": 3},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 12},
    {"type": "ReLU"},
    {"type": "Dense", "units": 3},
]
INPUT_SHAPE, BATCH = [2, 10, 10], 4


def build(layers, input_shape):
    """The torch nn.Sequential for DistTrain's layer config (the subset of types this interop uses)."""
    modules, (c, h, w), flat = [], input_shape, None
    for layer in layers:
        kind = layer["type"]
        if kind == "Conv2D":
            k, s, p = layer["kernel_size"], layer.get("stride") or 1, layer.get("padding", 0)
            modules.append(nn.Conv2d(c, layer["channels"], k, stride=s, padding=p))
            c, h, w = layer["channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind in ("MaxPool2D", "AvgPool2D"):
            k = layer["kernel_size"]
            s = layer.get("stride") or k
            modules.append((nn.MaxPool2d if kind == "MaxPool2D" else nn.AvgPool2d)(k, stride=s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "BatchNorm":
            args = dict(momentum=layer.get("momentum", 0.1), eps=layer.get("epsilon", 1e-5))
            modules.append(nn.BatchNorm1d(flat, **args) if flat else nn.BatchNorm2d(c, **args))
        elif kind == "ReLU":
            modules.append(nn.ReLU())
        elif kind == "Flatten":
            modules.append(nn.Flatten())
            flat = c * h * w
        elif kind == "Dense":
            modules.append(nn.Linear(flat if flat else c * h * w, layer["units"]))
            flat = layer["units"]
        else:
            raise SystemExit(f"torch_interop.py: layer type {kind} is not supported here; add it to build().")
    return nn.Sequential(*modules)


def encode(t):
    t = t.detach().to(torch.float32).contiguous()
    return {"shape": list(t.shape), "data": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode()}


def decode(entry):
    data = np.frombuffer(base64.b64decode(entry["data"]), dtype="<f4").reshape(entry["shape"])
    return torch.from_numpy(data.copy())


def write_safetensors(path, state):
    header, chunks, offset = {}, [], 0
    for name, t in state.items():
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        raw = t.detach().contiguous().numpy().astype(DTYPES[dtype][1]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # data starts 8-byte aligned, as the reference writer pads
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in chunks:
            f.write(raw)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    header.pop("__metadata__", None)
    start, state = 8 + length, {}
    for name, entry in header.items():
        if entry["dtype"] not in DTYPES:
            raise SystemExit(f"{path}: tensor {name} has dtype {entry['dtype']}; expected one of {sorted(DTYPES)}.")
        begin, end = entry["data_offsets"]
        data = np.frombuffer(blob[start + begin:start + end], dtype=DTYPES[entry["dtype"]][1]).reshape(entry["shape"])
        state[name] = torch.from_numpy(data.copy())
    return state


def eval_logits(model, x):
    """Evaluation-mode logits in float64 from the model's float32 weights."""
    reference = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return reference(x.double())


def export(out_safetensors, out_json):
    torch.manual_seed(3)
    model = build(LAYERS, INPUT_SHAPE)
    model.train()
    with torch.no_grad():
        for _ in range(10):  # running statistics well away from 0 and 1: inputs with mean 1 and std 2
            model(1 + 2 * torch.randn(8, *INPUT_SHAPE))
    x = torch.randn(BATCH, *INPUT_SHAPE)
    write_safetensors(out_safetensors, model.state_dict())
    with open(out_json, "w") as f:
        json.dump({"torch": torch.__version__, "input_shape": INPUT_SHAPE, "layers": LAYERS,
                   "x": encode(x), "logits": encode(eval_logits(model, x))}, f, indent=1)
    print(f"wrote {out_safetensors} ({len(model.state_dict())} tensors) and {out_json}")


def check(checkpoint, fixture_path):
    with open(fixture_path) as f:
        fixture = json.load(f)
    model = build(fixture["layers"], fixture["input_shape"])
    state = read_safetensors(checkpoint)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        print(f"{checkpoint} does not fit the architecture: missing {missing}, unexpected {unexpected}")
        return 1
    logits = eval_logits(model, decode(fixture["x"]))
    expected = decode(fixture["logits"]).double()
    if logits.shape != expected.shape:
        print(f"logits shape {list(logits.shape)} but the fixture has {list(expected.shape)}")
        return 1
    difference = (logits - expected).abs().max().item()
    if difference > TOLERANCE:
        print(f"max |torch - fixture| logit difference {difference:.3g} exceeds {TOLERANCE}")
        return 1
    print(f"ok: {len(state)} tensors loaded, max logit difference {difference:.3g}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
