"""Checks a repro record against what TensorBoard and h5py read from it (see ci/interop)."""
import glob
import gzip
import sys

import h5py
import numpy as np
from tensorboard.backend.event_processing import event_accumulator

# The notebook's LeNet(norm=True) state_dict: names in registration order, shapes of its definitions.
NOTEBOOK_STATE = [("conv1.weight", (6, 3, 5, 5)), ("conv1.bias", (6,))] + [
    (f"bn1.{n}", (6, 1)) for n in ("gamma", "beta", "running_mean", "running_std")] + [
    ("conv2.weight", (16, 6, 5, 5)), ("conv2.bias", (16,))] + [
    (f"bn2.{n}", (16, 1)) for n in ("gamma", "beta", "running_mean", "running_std")] + [
    ("fc3.weight", (120, 400)), ("fc3.bias", (120,))] + [
    (f"bn3.{n}", (120, 1)) for n in ("gamma", "beta", "running_mean", "running_std")] + [
    ("fc4.weight", (84, 120)), ("fc4.bias", (84,))] + [
    (f"bn4.{n}", (84, 1)) for n in ("gamma", "beta", "running_mean", "running_std")] + [
    ("fc5.weight", (10, 84)), ("fc5.bias", (10,))]


def expected_scalars(record):
    """(tag, step) -> float32 value, computed here from the record with h5py."""
    f = h5py.File(record, "r")
    out = {}
    before_loss, before_acc = f["evaluation/before/loss"][()], f["evaluation/before/accuracy"][()]
    for tag, v in (("train/loss", before_loss[0]), ("val/loss", before_loss[1]),
                   ("train/accuracy", before_acc[0]), ("val/accuracy", before_acc[1])):
        out[(tag, 0)] = np.float32(v)
    ep = {k: f["epochs/" + k][()] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
    for e in range(len(ep["train_loss"])):
        out[("train/loss", e + 1)] = np.float32(ep["train_loss"][e])
        out[("val/loss", e + 1)] = np.float32(ep["val_loss"][e])
        out[("train/accuracy", e + 1)] = np.float32(ep["train_accuracy"][e])
        out[("val/accuracy", e + 1)] = np.float32(ep["val_accuracy"][e])
    for s, (l, a) in enumerate(zip(f["steps/loss"][()], f["steps/accuracy"][()])):
        out[("step/loss", s + 1)] = np.float32(l)
        out[("step/accuracy", s + 1)] = np.float32(a)
    for layer in ("bn1", "bn2", "bn3", "bn4"):
        for series in ("batch_mean", "batch_std", "running_mean", "running_std"):
            values = f[f"steps/{layer}/{series}"][()].astype(np.float64)
            means = series.endswith("mean")
            for s, row in enumerate(values):
                total = 0.0  # summed in channel order in float64, as repro does
                for v in row:
                    total += abs(v) if means else v
                tag = f"{layer}/mean_abs_{series}" if means else f"{layer}/mean_{series}"
                out[(tag, s + 1)] = np.float32(total / len(row))
    return out


def read_events(logdir):
    ea = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    ea.Reload()
    return {(tag, e.step): np.float32(e.value) for tag in ea.Tags()["scalars"] for e in ea.Scalars(tag)}


def problems(expected, found):
    out = [f"missing {k}" for k in expected if k not in found]
    out += [f"unexpected {k}" for k in found if k not in expected]
    out += [f"{k}: {found[k]} in the event file, {v} in the record" for k, v in expected.items()
            if k in found and found[k].tobytes() != v.tobytes()]
    return out


def main(record, logdir):
    assert len(glob.glob(logdir + "/events.out.tfevents.*")) == 1, "one event file expected"
    expected, found = expected_scalars(record), read_events(logdir)
    # Negative control: one value off by one ULP must be reported.
    spoiled = dict(expected)
    key = ("step/loss", 3)
    spoiled[key] = np.nextafter(spoiled[key], np.float32(np.inf), dtype=np.float32)
    assert problems(spoiled, found), "negative control: a wrong value went unnoticed"
    wrong = problems(expected, found)
    assert not wrong, "event file differs from the record: " + "; ".join(wrong[:5])
    f = h5py.File(record, "r")
    for step in f["checkpoints"]:
        model = f[f"checkpoints/{step}/model"]
        got = sorted((n, model[n].shape) for n in model)
        assert got == sorted(NOTEBOOK_STATE), f"checkpoint {step}: {got}"
    # Negative control of the state_dict check: a missing tensor is noticed.
    assert sorted(NOTEBOOK_STATE[1:]) != sorted(NOTEBOOK_STATE)
    probes = check_probes(f)
    print(f"{len(expected)} scalars in {len(set(t for t, _ in expected))} tags equal the record; "
          f"{len(f['checkpoints'])} checkpoints have the notebook's state_dict; {probes}")
    print("interop: 2 passed, 0 failed")


def check_probes(f):
    """The labels' probe of every step, recomputed from the MNIST labels file and the stored epoch order;
    the update points name the notebook's parameters in order."""
    points = f["steps/probes"].attrs["points"].decode().split("\n")
    assert points[0] == "data/input/labels", points[0]
    params = [n for n, _ in NOTEBOOK_STATE if not n.endswith(("running_mean", "running_std"))]
    updates = [p.split(":", 1)[1] for p in points if p.startswith("update/")]
    assert updates == params, f"update points {updates}"
    with gzip.open("Data/mnist/train-labels-idx1-ubyte.gz", "rb") as g:
        labels = np.frombuffer(g.read()[8:], dtype=np.uint8).astype(np.float32)
    order, b = f["data/epoch_order"][()], int(f["config"].attrs["batch_size"])
    checksums, largest = f["steps/probes/checksum"][()][:, 0], f["steps/probes/largest"][()][:, 0]
    per_epoch = order.shape[1] // b

    def expected(step):  # docs/SCHEMA.md: the float32 bit patterns summed modulo 2**32, and max |x|
        epoch, k = divmod(step - 1, per_epoch)
        batch = labels[order[epoch, k * b:(k + 1) * b]]
        return int(batch.view(np.uint32).sum(dtype=np.uint64) % 2**32), float(np.abs(batch).max())

    for step in range(1, len(checksums) + 1):
        c, m = expected(step)
        assert (c, m) == (checksums[step - 1], largest[step - 1]), \
            f"step {step}: labels probe {checksums[step - 1]:#x}, {largest[step - 1]}; expected {c:#x}, {m}"
    # Negative control: the next step's batch gives another probe.
    assert expected(2) != (checksums[0], largest[0]), "negative control: another batch's labels went unnoticed"
    return f"{len(checksums)} steps' label probes equal the labels file's"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
