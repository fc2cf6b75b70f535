"""repro-torch verify GOLDEN.h5… — hold a PyTorch model to repro goldens, step by step.

Exit codes: 0 every golden identical or within round-off, 1 a drift, 2 an input that cannot be used
(a damaged golden, missing or other data, a model that does not import or does not fit).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional
from xml.sax.saxutils import escape, quoteattr


def choose_windows(count: int, wanted: Optional[int]) -> List[int]:
    """All windows, or N spread evenly over them, the first and the last included (deterministic)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    if wanted <= 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def windows_argument(value: str) -> Optional[int]:
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}': expected a number ≥ 1 or 'all'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"'{value}': expected a number ≥ 1 or 'all'")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro-torch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="replay each golden's windows in PyTorch and judge them by its round-off envelope")
    v.add_argument("goldens", nargs="+", metavar="GOLDEN.h5")
    v.add_argument("--model", metavar="FILE.py:CLASS", help="a torch.nn.Module with the notebook's module and state_dict names "
                   "(default: the notebook's LeNet with its own BatchNorm); built as CLASS() or CLASS(norm=…)")
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    v.add_argument("--windows", type=windows_argument, default=None, metavar="N|all", help="N windows spread over the run, or all (default)")
    v.add_argument("--data-dir", default="Data/mnist", help="MNIST's IDX files, raw or .gz (default Data/mnist)")
    v.add_argument("--threads", type=int, default=2, help="PyTorch's CPU threads (default 2)")
    v.add_argument("--onednn", action="store_true", help="let PyTorch use oneDNN's CPU convolutions (off by default: measured to "
                   "leave the round-off envelope within 5 steps, see python/README.md)")
    v.add_argument("--json", metavar="F", help="write one JSON object for the whole invocation")
    v.add_argument("--junit", metavar="F", help="write JUnit XML, one suite per golden")
    return p


def build_model(spec: Optional[str], record):
    import torch

    from .model import LeNet, ModelError, load_model_class

    c = record.config
    if spec is None:
        return LeNet(c.norm, c.bn_momentum, c.bn_epsilon, c.bn_unbiased)
    cls = load_model_class(spec)
    try:
        try:
            model = cls(norm=c.norm)
        except TypeError:
            model = cls()
    except Exception as e:  # the user's constructor
        raise ModelError(f"{spec}: constructing it failed: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}: not a torch.nn.Module")
    return model


def verify(args) -> int:
    import torch

    from .data import DataError, load_mnist
    from .judge import as_json, judge, text
    from .model import ModelError
    from .orders import rebuild_orders
    from .record import Record, RecordError
    from .replay import replay_window

    torch.set_num_threads(max(1, args.threads))
    torch.backends.mkldnn.enabled = bool(args.onednn)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("repro-torch: --device cuda: this PyTorch has no CUDA device", file=sys.stderr)
        return 2
    reports, unusable, suites = [], [], []
    data_cache = {}
    for path in args.goldens:
        started = time.perf_counter()
        try:
            with Record(path) as record:
                if record.config.dataset != "mnist":
                    raise RecordError(f"{path}: dataset {record.config.dataset}: repro-torch replays MNIST goldens")
                if record.replicas is None:
                    raise RecordError(f"{path}: the golden has no round-off envelope (schema 4, or recorded with --envelope 0): "
                                      "PyTorch's bits differ from repro's, so only an envelope can judge them (re-record it with repro record --like)")
                orders = rebuild_orders(record)
                key = (args.data_dir, tuple(sorted(record.fingerprints.items())))
                if key not in data_cache:
                    data_cache[key] = load_mnist(args.data_dir, record.fingerprints)
                data = data_cache[key]
                model = build_model(args.model, record)
                windows = record.plan.windows
                chosen = [windows[i] for i in choose_windows(len(windows), args.windows)]
                replays = [replay_window(model, record, w, data, orders, args.device) for w in chosen]
                report = judge(record, replays)
        except (RecordError, DataError, ModelError) as e:
            print(f"error: {e}", file=sys.stderr)
            unusable.append({"file": path, "problem": str(e)})
            continue
        backend = "oneDNN" if args.onednn else "native"
        subject = f"PyTorch {torch.__version__} ({backend} convolutions), {args.model or 'the notebook LeNet'}"
        print(text(report, subject))
        reports.append(report)
        suites.append((report, time.perf_counter() - started))
    passed = all(r.passed for r in reports)
    code = 2 if unusable else (0 if passed else 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"exit_code": code, "passed": code == 0, "reports": [as_json(r) for r in reports], "unusable": unusable}, f, indent=1)
    if args.junit:
        with open(args.junit, "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="repro-torch">\n')
            for report, seconds in suites:
                failures = 0 if report.passed else 1
                f.write(f'  <testsuite name={quoteattr(report.golden)} tests="1" failures="{failures}" time="{seconds:.3f}">\n')
                f.write(f'    <properties><property name="verdict" value={quoteattr(report.verdict)}/></properties>\n')
                f.write(f'    <testcase classname={quoteattr(report.golden)} name="pytorch replay">')
                if not report.passed:
                    f.write(f"<failure message={quoteattr(report.first_beyond.message)}>{escape(report.first_beyond.message)}</failure>")
                f.write("</testcase>\n  </testsuite>\n")
            for u in unusable:
                f.write(f'  <testsuite name={quoteattr(u["file"])} tests="1" errors="1"><testcase name="open">'
                        f'<error message={quoteattr(u["problem"])}/></testcase></testsuite>\n')
            f.write("</testsuites>\n")
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
