"""Training throughput of every model on synthetic inputs: samples/s of a full Adam step
(forward, cross-entropy, backward, update), and inference samples/s.

    python benchmarks/bench_models.py                                   # all models, CPU
    python benchmarks/bench_models.py --models resnet101 --device cuda --batch-size 512 --precision bf16
    python benchmarks/bench_models.py --models resnet101 --device cuda --compile
    python benchmarks/bench_models.py --models convnet_logq convnet_logq:axis_points=4096 --threads 2

Parameter counts are printed for 145 classes and 8501 points next to the paper's figures.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"parkcnn_medium": 4_246_797, "parkcnn_big": 4_959_585, "resnet10": 9_395_025,
         "resnet50": 41_362_385, "resnet101": 60_354_513}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_config(name: str) -> dict:
    """``conf/model/<name>.yaml`` with its defaults list resolved (several configs extend another) and,
    for a log-Q model, the default simulation grid's 2-theta range filled in as a training run does.
    ``name:key=value,key=value`` overrides keys of that model config (``convnet_logq:axis_points=4096``)."""
    name, _, changes = name.partition(":")
    overrides = [f"model={name}"] + [f"model.{kv}" for kv in changes.split(",") if kv]
    from hydra import compose, initialize_config_dir

    from simulator.representation import make_representation
    from trainer.config import to_dict
    from trainer.models.log_axis import fit_log_axis

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return fit_log_axis(to_dict(cfg.model), make_representation(cfg.simulation))


def bench(name: str, args) -> dict:
    from trainer.models import build_model, count_parameters

    device = torch.device(args.device)
    cfg = model_config(name)
    torch.manual_seed(0)
    model = build_model(cfg, args.classes, args.length).to(device)
    n_params = count_parameters(model)
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch_size, args.length, device=device)
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
           else contextlib.nullcontext())

    def train_step():
        with amp:
            out = step_model(x)
        loss = F.cross_entropy(out["logits"].float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        train_step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    sync(device)
    train = args.steps * args.batch_size / (time.perf_counter() - t0)

    model.eval()
    with torch.inference_mode():
        for _ in range(args.warmup):
            with amp:
                step_model(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            with amp:
                step_model(x)
        sync(device)
    infer = args.steps * args.batch_size / (time.perf_counter() - t0)
    return {"model": name, "params": n_params, "train": train, "infer": infer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+",
                   default=["parkcnn_small", "parkcnn_medium", "parkcnn_big", "resnet10", "resnet50", "resnet101"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: 145 (64 on the CPU)")
    p.add_argument("--length", type=int, default=8501)
    p.add_argument("--classes", type=int, default=145)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on CUDA")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (145 if cuda else 64)
    args.steps = args.steps or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {where}; batch {args.batch_size}, {args.length} points, {args.classes} classes, {args.precision}"
          f"{', compiled' if args.compile else ''}")
    print(f"{'model':<16}{'parameters':>14}{'paper':>14}{'train samples/s':>18}{'infer samples/s':>18}")
    for name in args.models:
        r = bench(name, args)
        paper = f"{PAPER[name]:,}" if name in PAPER else "-"  # a variant (name:key=value) has no paper count
        print(f"{name:<16}\n{'':<16}" if len(name) > 15 else f"{name:<16}", end="")
        print(f"{r['params']:>14,}{paper:>14}{r['train']:>18.1f}{r['infer']:>18.1f}", flush=True)


if __name__ == "__main__":
    main()
