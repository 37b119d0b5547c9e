#!/usr/bin/python3
"""Golden values for DistTrain's optimizers and learning-rate schedules, produced by PyTorch (Debian's python3-torch, CPU).

Optimizer cases: 20 steps of torch.optim.SGD (momentum; Nesterov), Adam, AdamW and RMSprop (momentum) on one
parameter vector split into two parameter groups, the first with weight_decay=L2 and the second with
weight_decay=0 (as biases in DistTrain), plus L1 * sign(w) added to the first group's gradient. The loss is
    sum_i c_i (w_i - t_i)^2 + K * sum_i sin(w_i),
so the gradient g_i = 2 c_i (w_i - t_i) + K cos(w_i) depends on the weights and errors compound; it is formed
explicitly in float32 (not by autograd) so that DistTrain can form it the same way. The learning rate of every
step comes from torch's schedulers (stepped per epoch for StepLR and ExponentialLR, per step for LinearLR warmup
and CosineAnnealingLR; warmup multiplies the main schedule) and is set as param_group['lr'] before each step.

Schedule cases: the learning-rate sequence of torch's schedulers alone, one value per optimizer step.

Tensors are base64 of little-endian float32. Run from this folder: /usr/bin/python3 make_optimizer_golden.py
"""
import base64, json, math
import torch

STEPS_PER_EPOCH, EPOCHS = 5, 4          # 20 optimizer steps
DECAYED, PLAIN = 7, 5                    # group sizes: weight_decay = L2, then weight_decay = 0
K = 0.1                                  # strength of the nonlinearity


def b64(t):
    return base64.b64encode(t.detach().contiguous().numpy().astype("<f4").tobytes()).decode()


def scheduler_rates(base, make, steps_per_epoch, epochs, per_step):
    """The lr a torch scheduler gives each optimizer step, stepped per step or per epoch, on a throwaway optimizer."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    scheduler = make(opt)
    rates = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                scheduler.step()
        if not per_step:
            scheduler.step()
    return rates


def lr_sequence(base, schedule, steps_per_epoch, epochs):
    """Per-step learning rates: the main scheduler's rate times the warmup's factor (LinearLR on lr 1).

    StepLR and ExponentialLR step per epoch; LinearLR and CosineAnnealingLR per optimizer step. The product is
    what torch's ChainedScheduler gives for multiplicative schedulers; for warmup with cosine and eta_min = 0 the
    script checks that against ChainedScheduler itself (with eta_min > 0 torch's recursive cosine form drifts
    from its closed form once chained, and DistTrain keeps the closed form).
    """
    n = steps_per_epoch * epochs
    lr_sched = torch.optim.lr_scheduler
    kind = schedule["Kind"]
    if kind == "Step":
        main = scheduler_rates(base, lambda o: lr_sched.StepLR(o, step_size=schedule["StepEpochs"], gamma=schedule["Gamma"]),
                               steps_per_epoch, epochs, per_step=False)
    elif kind == "Exponential":
        main = scheduler_rates(base, lambda o: lr_sched.ExponentialLR(o, gamma=schedule["Gamma"]), steps_per_epoch, epochs, per_step=False)
    elif kind == "Cosine":
        main = scheduler_rates(base, lambda o: lr_sched.CosineAnnealingLR(o, T_max=n, eta_min=schedule["MinLearningRate"]),
                               steps_per_epoch, epochs, per_step=True)
    else:
        main = [base] * n
    if schedule.get("WarmupSteps", 0) == 0:
        return main
    warmup = lambda o: lr_sched.LinearLR(o, start_factor=schedule["WarmupStartFactor"], total_iters=schedule["WarmupSteps"])
    factor = scheduler_rates(1.0, warmup, steps_per_epoch, epochs, per_step=True)
    rates = [m * f for m, f in zip(main, factor)]
    if kind == "Cosine" and schedule["MinLearningRate"] == 0:
        chained = scheduler_rates(base, lambda o: lr_sched.ChainedScheduler(
            [warmup(o), lr_sched.CosineAnnealingLR(o, T_max=n, eta_min=0.0)]), steps_per_epoch, epochs, per_step=True)
        assert max(abs(a - b) for a, b in zip(rates, chained)) < 1e-12 * base, "ChainedScheduler differs from the product"
    return rates


def run(options):
    torch.manual_seed(0)
    w = torch.randn(DECAYED + PLAIN)
    t = torch.randn(DECAYED + PLAIN)
    c = 0.5 + 1.5 * torch.rand(DECAYED + PLAIN)
    a = w[:DECAYED].clone().requires_grad_(True)
    b = w[DECAYED:].clone().requires_grad_(True)
    lr, l2, l1 = options["LearningRate"], options["L2"], options["L1"]
    groups = [{"params": [a], "weight_decay": l2}, {"params": [b], "weight_decay": 0.0}]
    kind = options["Kind"]
    if kind == "Sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=options["Momentum"], nesterov=options["Nesterov"])
    elif kind == "Adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=(options["Beta1"], options["Beta2"]), eps=options["Epsilon"])
    elif kind == "AdamW":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(options["Beta1"], options["Beta2"]), eps=options["Epsilon"])
    elif kind == "RMSProp":
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=options["Alpha"], eps=options["Epsilon"], momentum=options["Momentum"])
    rates = lr_sequence(lr, options["Schedule"], STEPS_PER_EPOCH, EPOCHS)
    initial = torch.cat([a, b]).detach().clone()
    losses = []
    for rate in rates:
        with torch.no_grad():
            full = torch.cat([a, b])
            losses.append(float((c * (full - t) ** 2).sum() + K * torch.sin(full).sum()))
            g = 2 * c * (full - t) + K * torch.cos(full)
            a.grad = g[:DECAYED].clone() + l1 * torch.sign(a)
            b.grad = g[DECAYED:].clone()
        for group in opt.param_groups:
            group["lr"] = rate
        opt.step()
    state = {}
    for name in ("momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg"):
        if name in opt.state[a] and opt.state[a][name] is not None:
            state[name] = b64(torch.cat([opt.state[a][name], opt.state[b][name]]))
    return {"initial": b64(initial), "targets": b64(t), "coefficients": b64(c), "learning_rates": rates,
            "losses": losses, "final": b64(torch.cat([a, b])), "state": state}


def options(kind, lr, schedule, **extra):
    o = {"Kind": kind, "LearningRate": lr, "Momentum": 0.0, "Nesterov": False, "L1": 1e-3, "L2": 0.05,
         "Beta1": 0.9, "Beta2": 0.999, "Epsilon": 1e-8, "Alpha": 0.99, "Schedule": schedule}
    o.update(extra)
    return o


CASES = {
    "sgd_momentum_step": options("Sgd", 0.05, {"Kind": "Step", "StepEpochs": 2, "Gamma": 0.5}, Momentum=0.9),
    "sgd_nesterov_warmup_cosine": options("Sgd", 0.05, {"Kind": "Cosine", "MinLearningRate": 0.0, "WarmupSteps": 5,
                                                         "WarmupStartFactor": 0.1}, Momentum=0.9, Nesterov=True),
    "adam_exponential": options("Adam", 0.05, {"Kind": "Exponential", "Gamma": 0.8}, Beta2=0.99),
    "adamw_warmup_cosine": options("AdamW", 0.05, {"Kind": "Cosine", "MinLearningRate": 0.005, "WarmupSteps": 4,
                                                    "WarmupStartFactor": 0.25}, L2=0.2),
    "rmsprop_momentum_warmup_step": options("RMSProp", 0.01, {"Kind": "Step", "StepEpochs": 1, "Gamma": 0.7,
                                                               "WarmupSteps": 3, "WarmupStartFactor": 0.1},
                                            Momentum=0.5, Alpha=0.9, Epsilon=1e-6),
}

SCHEDULES = {
    "constant": {"Kind": "Constant"},
    "step": {"Kind": "Step", "StepEpochs": 2, "Gamma": 0.5},
    "exponential": {"Kind": "Exponential", "Gamma": 0.9},
    "cosine": {"Kind": "Cosine", "MinLearningRate": 0.001},
    "warmup_constant": {"Kind": "Constant", "WarmupSteps": 10, "WarmupStartFactor": 0.1},
    "warmup_step": {"Kind": "Step", "StepEpochs": 2, "Gamma": 0.5, "WarmupSteps": 10, "WarmupStartFactor": 0.2},
    "warmup_exponential": {"Kind": "Exponential", "Gamma": 0.9, "WarmupSteps": 3, "WarmupStartFactor": 0.5},
    "warmup_cosine": {"Kind": "Cosine", "MinLearningRate": 0.0, "WarmupSteps": 10, "WarmupStartFactor": 0.1},
}
SCHEDULE_BASE, SCHEDULE_STEPS_PER_EPOCH, SCHEDULE_EPOCHS = 0.1, 7, 6

out = {"torch": torch.__version__, "steps_per_epoch": STEPS_PER_EPOCH, "epochs": EPOCHS, "nonlinearity": K,
       "groups": [{"offset": 0, "length": DECAYED, "decay": True}, {"offset": DECAYED, "length": PLAIN, "decay": False}],
       "cases": [dict(name=name, options=o, **run(o)) for name, o in CASES.items()],
       "schedule_base_learning_rate": SCHEDULE_BASE, "schedule_steps_per_epoch": SCHEDULE_STEPS_PER_EPOCH,
       "schedule_epochs": SCHEDULE_EPOCHS,
       "schedules": [{"name": name, "schedule": s,
                      "learning_rates": lr_sequence(SCHEDULE_BASE, s, SCHEDULE_STEPS_PER_EPOCH, SCHEDULE_EPOCHS)}
                     for name, s in SCHEDULES.items()]}
with open("optimizer_golden.json", "w") as f:
    json.dump(out, f, indent=1)
for case in out["cases"]:
    print(case["name"], "loss", round(case["losses"][0], 4), "->", round(case["losses"][-1], 4))
