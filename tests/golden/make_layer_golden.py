#!/usr/bin/python3
"""Golden values for DistTrain's image and normalization layers, produced by PyTorch (Debian's python3-torch, CPU).

Writes layer_golden.json with one entry per case in "cases": the layer's config in DistTrain's terms
("layer": type, channels, kernel_size, stride, padding, rate, momentum, epsilon), the sample's input shape,
whether the layer runs in training mode, and the tensors x, every parameter and buffer before the forward pass
("parameters"), y, a random upstream gradient dy, dx, every parameter gradient ("gradients"), BatchNorm's running
statistics after the forward pass ("running_after") and, for Dropout, the mask torch drew ("mask", 0 or 1/(1-p)).
Cases: Conv2d (stride 1 pad 0; k 5 pad 2; stride 2 pad 1), MaxPool2d(2), MaxPool2d(3, stride 2), AvgPool2d(2),
BatchNorm2d in training and in evaluation mode, BatchNorm1d on flat input, LayerNorm over [C, H, W] and over [F],
Dropout(0.3), and on 1x1 feature maps [C, 1, 1] (what a convolution or pooling covering its whole input leaves):
Conv2d with k 1, Conv2d with k 3 pad 1, MaxPool2d(1), BatchNorm2d in training mode and LayerNorm([C, 1, 1]). The 1x1
cases come last, so the earlier cases' draws, and their values, are those of the script without them. "model" holds a small CNN nn.Sequential with PyTorch's default initialization, a batch with
class labels, the mean cross-entropy loss, every parameter gradient and the running statistics after the forward.

Precision: inputs and parameters are drawn in float32 (so they are exactly what the C# side loads), then every
computation runs in float64 and the results are rounded to float32. The fixture is thus the exact answer to within
float32 rounding, and the differences the C# test sees are DistTrain's own float32 error.

Tensors are {"shape", "data"}: data is base64 of little-endian float32, row-major. Activations are (N, ...) so,
read column-major, they are DistTrain's [features, batch] matrices. Parameter names are PyTorch's state_dict names;
the model's are "{index}.{name}" as nn.Sequential gives them.
Run from this folder: /usr/bin/python3 make_layer_golden.py
"""
import base64, json
import torch
import torch.nn as nn
import torch.nn.functional as F


def tensor(t):
    t = t.detach().to(torch.float32).contiguous()
    return {"shape": list(t.shape), "data": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode()}


def randn(*shape, scale=1.0):
    """float32 normal draws, returned as float64 (exactly representable in float32)."""
    return (torch.randn(*shape, dtype=torch.float32) * scale).to(torch.float64)


def case(name, layer, config, input_shape, batch=3, training=True, mask=None, x=None):
    """Runs layer (float64) forward and backward on a random batch; returns the fixture entry."""
    layer = layer.double()
    layer.train(training)
    x = randn(batch, *input_shape) if x is None else x
    x.requires_grad_(True)
    before = {k: tensor(v) for k, v in layer.state_dict().items() if v.is_floating_point()}
    y = layer(x)
    entry = {}
    if mask is not None:
        # torch drew the mask; recover it from which outputs survived: 0 or 1/(1-p).
        kept = (y != 0).to(torch.float64) / (1 - config["rate"])
        entry["mask"] = tensor(kept)
    dy = randn(*y.shape)
    y.backward(dy)
    entry.update({
        "name": name, "layer": config, "input_shape": list(input_shape), "training": training,
        "x": tensor(x), "parameters": before, "y": tensor(y), "dy": tensor(dy), "dx": tensor(x.grad),
        "gradients": {k: tensor(p.grad) for k, p in layer.named_parameters()},
        "running_after": {k: tensor(v) for k, v in layer.named_buffers() if k.startswith("running_")},
    })
    return entry


def nontrivial_batchnorm(module):
    """Random γ, β and running statistics (running_var in [0.5, 2.5)), so no term of the formulas is 0 or 1."""
    with torch.no_grad():
        module.weight.copy_(1 + 0.5 * torch.randn(module.num_features))
        module.bias.copy_(0.5 * torch.randn(module.num_features))
        module.running_mean.copy_(0.5 * torch.randn(module.num_features))
        module.running_var.copy_(0.5 + 2 * torch.rand(module.num_features))
    return module


def nontrivial_layernorm(module):
    with torch.no_grad():
        module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape))
        module.bias.copy_(0.5 * torch.randn(module.bias.shape))
    return module


def conv(name, c, oc, k, stride, padding, shape):
    # Biases default to small uniform values; draw larger ones so a bias bug is visible at 1e-4.
    layer = nn.Conv2d(c, oc, k, stride=stride, padding=padding)
    with torch.no_grad():
        layer.bias.copy_(0.5 * torch.randn(oc))
    config = {"type": "Conv2D", "channels": oc, "kernel_size": k, "stride": stride, "padding": padding}
    return case(name, layer, config, shape)


torch.manual_seed(0)
cases = [
    # Non-square inputs (H != W), so a swapped height and width cannot pass.
    conv("conv2d_stride1_pad0", 3, 4, 3, 1, 0, (3, 7, 8)),
    conv("conv2d_k5_stride1_pad2", 2, 3, 5, 1, 2, (2, 6, 7)),
    conv("conv2d_stride2_pad1", 3, 4, 3, 2, 1, (3, 7, 8)),
    # Normal draws in float32 have no ties (probability ~1e-7 per pair), so argmax is unique.
    case("maxpool2d_k2", nn.MaxPool2d(2), {"type": "MaxPool2D", "kernel_size": 2}, (3, 6, 8)),
    case("maxpool2d_k3_stride2", nn.MaxPool2d(3, stride=2), {"type": "MaxPool2D", "kernel_size": 3, "stride": 2}, (2, 7, 9)),
    case("avgpool2d_k2", nn.AvgPool2d(2), {"type": "AvgPool2D", "kernel_size": 2}, (3, 6, 8)),
    # Offset and scaled inputs, so normalization has real work: mean ~1.5, std ~2.
    case("batchnorm2d_train", nontrivial_batchnorm(nn.BatchNorm2d(3)), {"type": "BatchNorm", "momentum": 0.1, "epsilon": 1e-5},
         (3, 4, 5), batch=4, x=1.5 + 2 * randn(4, 3, 4, 5)),
    case("batchnorm2d_eval", nontrivial_batchnorm(nn.BatchNorm2d(3)), {"type": "BatchNorm", "momentum": 0.1, "epsilon": 1e-5},
         (3, 4, 5), batch=4, training=False, x=1.5 + 2 * randn(4, 3, 4, 5)),
    case("batchnorm1d_train", nontrivial_batchnorm(nn.BatchNorm1d(6)), {"type": "BatchNorm", "momentum": 0.1, "epsilon": 1e-5},
         (6,), batch=5, x=1.5 + 2 * randn(5, 6)),
    case("layernorm_chw", nontrivial_layernorm(nn.LayerNorm([3, 4, 5])), {"type": "LayerNorm", "epsilon": 1e-5},
         (3, 4, 5), x=1.5 + 2 * randn(3, 3, 4, 5)),
    case("layernorm_flat", nontrivial_layernorm(nn.LayerNorm(10)), {"type": "LayerNorm", "epsilon": 1e-5},
         (10,), batch=4, x=1.5 + 2 * randn(4, 10)),
    case("dropout_p03", nn.Dropout(0.3), {"type": "Dropout", "rate": 0.3}, (40,), batch=5, mask=True),
    # 1x1 feature maps stay images [C, 1, 1] in torch: convolution, pooling and normalization run on them as on any image.
    conv("conv2d_k1_on_1x1", 4, 3, 1, 1, 0, (4, 1, 1)),
    conv("conv2d_k3_pad1_on_1x1", 2, 3, 3, 1, 1, (2, 1, 1)),
    case("maxpool2d_k1_on_1x1", nn.MaxPool2d(1), {"type": "MaxPool2D", "kernel_size": 1}, (3, 1, 1)),
    case("batchnorm2d_on_1x1_train", nontrivial_batchnorm(nn.BatchNorm2d(5)), {"type": "BatchNorm", "momentum": 0.1, "epsilon": 1e-5},
         (5, 1, 1), batch=4, x=1.5 + 2 * randn(4, 5, 1, 1)),
    case("layernorm_on_1x1", nontrivial_layernorm(nn.LayerNorm([4, 1, 1])), {"type": "LayerNorm", "epsilon": 1e-5},
         (4, 1, 1), x=1.5 + 2 * randn(3, 4, 1, 1)),
]

# The whole CNN, in training mode (BatchNorm on batch statistics); Dropout has p = 0 so torch's mask is the identity.
torch.manual_seed(1)
layers = [
    ({"type": "Conv2D", "channels": 4, "kernel_size": 3, "padding": 1}, nn.Conv2d(2, 4, 3, padding=1)),
    ({"type": "BatchNorm"}, nontrivial_batchnorm(nn.BatchNorm2d(4))),
    ({"type": "ReLU"}, nn.ReLU()),
    ({"type": "MaxPool2D", "kernel_size": 2}, nn.MaxPool2d(2)),
    ({"type": "Conv2D", "channels": 6, "kernel_size": 3}, nn.Conv2d(4, 6, 3)),
    ({"type": "ReLU"}, nn.ReLU()),
    ({"type": "AvgPool2D", "kernel_size": 2}, nn.AvgPool2d(2)),
    ({"type": "Flatten"}, nn.Flatten()),
    ({"type": "Dense", "units": 16}, nn.Linear(24, 16)),
    ({"type": "LayerNorm"}, nontrivial_layernorm(nn.LayerNorm(16))),
    ({"type": "Dropout", "rate": 0.0}, nn.Dropout(0.0)),
    ({"type": "Dense", "units": 5}, nn.Linear(16, 5)),
]
model = nn.Sequential(*[m for _, m in layers]).double().train()
input_shape, batch = (2, 12, 12), 6
x = randn(batch, *input_shape)
labels = torch.tensor([0, 3, 1, 4, 2, 3])
before = {k: tensor(v) for k, v in model.state_dict().items() if v.is_floating_point()}
loss = F.cross_entropy(model(x), labels)
loss.backward()
golden_model = {
    "input_shape": list(input_shape), "layers": [c for c, _ in layers], "x": tensor(x), "labels": labels.tolist(),
    "parameters": before, "loss": loss.item(),
    "gradients": {k: tensor(p.grad) for k, p in model.named_parameters()},
    "running_after": {k: tensor(v) for k, v in model.named_buffers() if ".running_" in k},
}

with open("layer_golden.json", "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases, "model": golden_model}, f)
print(len(cases), "cases; model loss", round(loss.item(), 6))
