"""PyTorch's side of the comparison with PyTorch (run by ci/pytorch-compare, not a test).

The notebook's LeNet-5 (its own BatchNorm1d/BatchNorm2d, restated operation for operation in repro-torch's
`repro_torch.model`, python/src) in PyTorch:
- `speed`: milliseconds per training step (forward, cross-entropy, backward, SGD with the notebook's
  hyper-parameters) on a fixed batch of 128 of MNIST's training shape (3×32×32), median of N steps.
- `accuracy`: the relative L2 error of each float32 parameter gradient against the same step in float64,
  at the states of a repro record's checkpoints (a real trajectory) on the batches the record says those
  steps used: the same states and batches as `repro bench --accuracy`. The batch is rebuilt from the MNIST
  files with the notebook's transform and checked against the record's probe of the step's input.
"""
import argparse
import gzip
import json
import statistics
import sys
import time

import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "src"))
from repro_torch.data import notebook_batch  # noqa: E402  (the notebook's transform, one home)
from repro_torch.model import LeNet  # noqa: E402  (the notebook's model, one home)


def speed(norm, threads, steps, warmup):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = LeNet(norm)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, weight_decay=1e-6, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"threads": threads, "ms_per_step": 1e3 * statistics.median(times), "best_ms": 1e3 * min(times),
            "torch": torch.__version__, "steps": steps}


def mnist_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, rows, cols)


def accuracy(record, images, labels, threads):
    torch.set_num_threads(threads)
    f = h5py.File(record, "r")
    norm = bool(f["config"].attrs["norm"])
    b = int(f["config"].attrs["batch_size"])
    order = f["data/epoch_order"][()]
    per_epoch = order.shape[1] // b
    points = f["steps/probes"].attrs["points"].decode().split("\n")
    image_probe = points.index("data/input/images")
    errors = {}
    checked = 0
    for key in sorted(f["checkpoints"]):
        step = int(key)
        if step >= f["steps/loss"].shape[0]:
            continue  # the last checkpoint: no step follows it in the record
        epoch, k = divmod(step, per_epoch)
        indices = order[epoch, k * b:(k + 1) * b]
        x32 = notebook_batch(images, indices)
        # The record's probe of this step's input (the checksum of its float32 bits, docs/SCHEMA.md): the batch
        # rebuilt here must be the one repro used, bit for bit.
        def checksum(t):
            return int(t.contiguous().numpy().view(np.uint32).sum(dtype=np.uint64) % 2**32)
        recorded = int(f["steps/probes/checksum"][step, image_probe])
        rebuilt = checksum(x32)
        if rebuilt != recorded:
            sys.exit(f"{record}: the batch of step {step + 1} rebuilt here has checksum {rebuilt:#x}, the record {recorded:#x}")
        if checked == 0:  # negative control: the next batch's images fail that check
            other = checksum(notebook_batch(images, order[epoch, (k + 1) * b:(k + 2) * b]))
            assert other != recorded, "negative control: another batch passed the input check"
        checked += 1
        y = torch.from_numpy(labels[indices].astype(np.int64))
        state = {name: torch.from_numpy(np.asarray(t[()], dtype=np.float32)) for name, t in f[f"checkpoints/{key}/model"].items()}
        nets = {}
        for dtype in (torch.float32, torch.float64):
            net = LeNet(norm)
            net.load_state_dict(state)
            net = net.to(dtype).train()
            loss = F.cross_entropy(net(x32.to(dtype)), y)
            loss.backward()
            nets[dtype] = net
        n32, n64 = nets[torch.float32], nets[torch.float64]
        weight_norm = 1.0
        for (name, p32), (_, p64) in zip(n32.named_parameters(), n64.named_parameters()):
            g64, g32 = p64.grad.detach(), p32.grad.detach().double()
            diff, ref = float((g32 - g64).norm()), float(g64.norm())
            if name.endswith((".weight", ".gamma")):
                weight_norm = ref
            if name.endswith(".bias") and ref < 1e-9 * weight_norm:  # before BN: exactly 0, as repro reports it
                errors.setdefault(name + " gradient (exactly 0; |error| / |weight grad|)", []).append(diff / weight_norm)
            else:
                errors.setdefault(name + " gradient", []).append(diff / ref)
        for layer in ("bn1", "bn2", "bn3", "bn4") if norm else ():
            worst = 0.0
            for s32, s64 in zip(getattr(n32, layer).batch_statistics, getattr(n64, layer).batch_statistics):
                worst = max(worst, float((s32.double() - s64).abs().max() / s64.abs().max()))
            errors.setdefault(layer + " batch statistics", []).append(worst)
    return {"norm": norm, "states": checked, "torch": torch.__version__, "threads": threads,
            "tensors": [{"name": n, "median": statistics.median(v), "worst": max(v)} for n, v in errors.items()]}


def misses_target(name, mine, theirs):
    """The accuracy target for one tensor's median error: at most 3x PyTorch's (conv1's weight: no
    worse than PyTorch), and BN batch statistics at most 5e-7."""
    if name.endswith("batch statistics"):
        return mine > 5e-7 or mine > 3 * theirs
    return mine > (theirs if name.startswith("conv1.weight") else 3 * theirs)


def report(files):
    """The comparison table and the accuracy targets, from the JSON files the wrapper collected."""
    # Negative controls: figures just past each target are reported.
    assert misses_target("fc3.weight gradient", 3.1e-6, 1e-6) and not misses_target("fc3.weight gradient", 2.9e-6, 1e-6)
    assert misses_target("conv1.weight gradient", 1.1e-4, 1e-4) and misses_target("bn1 batch statistics", 5.1e-7, 1e-6)
    load = lambda name: json.load(open(files[name]))
    ok = True
    print("speed (median ms per step, the same batch shape; LeNet-5 + BN, batch 128):")
    for threads in (1, 2):
        torch_fig, repro_fig = load(f"torch_speed_{threads}"), load(f"repro_speed_{threads}")
        print(f"  {threads} thread(s): PyTorch {torch_fig['torch']} {torch_fig['ms_per_step']:.1f} ms, repro portable "
              f"{repro_fig['ms_per_step']:.2f} ms ({torch_fig['ms_per_step'] / repro_fig['ms_per_step']:.1f}x faster; "
              f"{100 * repro_fig['share_of_fma_peak']:.0f}% of the FMA peak measured beside it)")
    for model in ("bn", "no_bn"):
        torch_fig, repro_fig = load(f"torch_accuracy_{model}"), load(f"repro_accuracy_{model}")["accuracy"]
        print(f"accuracy, model {'with' if model == 'bn' else 'without'} BN ({torch_fig['states']} states; median "
              f"(worst) relative error against float64; target: repro <= 3x PyTorch, BN statistics <= 5e-7):")
        for row in torch_fig["tensors"]:
            name, mine = row["name"], repro_fig[row["name"]]
            ratio = mine["median"] / row["median"]
            fails = misses_target(name, mine["median"], row["median"])
            ok = ok and not fails
            print(f"  {name:56} PyTorch {row['median']:.1e} ({row['worst']:.1e})  repro {mine['median']:.1e} "
                  f"({mine['worst']:.1e})  ratio {ratio:5.2f}{'  FAILS' if fails else ''}")
    print("accuracy targets: " + ("met" if ok else "NOT met"))
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--steps", type=int, default=150)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--no-norm", action="store_true")
    a = sub.add_parser("accuracy")
    a.add_argument("record")
    a.add_argument("--data-dir", default="Data/mnist")
    a.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+", help="NAME=FILE.json, as ci/pytorch-compare passes them")
    args = parser.parse_args()
    if args.command == "report":
        sys.exit(0 if report(dict(f.split("=", 1) for f in args.files)) else 1)
    if args.command == "speed":
        print(json.dumps(speed(not args.no_norm, args.threads, args.steps, args.warmup)))
    else:
        images = mnist_images(f"{args.data_dir}/train-images-idx3-ubyte.gz")
        with gzip.open(f"{args.data_dir}/train-labels-idx1-ubyte.gz", "rb") as g:
            labels = np.frombuffer(g.read()[8:], dtype=np.uint8)
        print(json.dumps(accuracy(args.record, images, labels, args.threads)))


if __name__ == "__main__":
    main()
