"""``wattwise advise``: cache-aware sizing advice for an MLP, from the BUTTER-E energy model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from wattwise.cli._common import CLIError, add_subcommand, check_output_file, warnings_to_stderr

if TYPE_CHECKING:
    from wattwise.model.curves import NtpCurve

EPILOG = """\
examples:
  wattwise advise --widths 784,512,512,10 --batch-size 256
  wattwise advise --shape rectangle --depth 4 --size 1048576 --inputs 784 --outputs 10
  wattwise advise --widths 784,512,512,10 --samples 60000 --hardware butter-e-gpu --json
  wattwise advise --dataset 201_pol --shape trapezoid --depth 5 --size 65536 --hardware butter-e-cpu
  wattwise advise --shape rectangle --depth 3 --inputs 784 --outputs 10 --plot ntp_knee.png
  wattwise advise --widths 784,512,10 --cache L2=2M --cache L3=32M,1 --coefficients mine.json

--widths lists the input width first, then every Dense layer's width (output included).
Energies are estimates from the BUTTER-E model (Tripp et al. 2024), not measurements.
"""

HARDWARE = ("auto", "cpu", "gpu", "butter-e-cpu", "butter-e-gpu")


def register(subparsers: Any) -> None:
    """Add the ``advise`` subcommand."""
    p = add_subcommand(
        subparsers,
        "advise",
        help="cache-aware sizing advice for an MLP (energy model estimates)",
        description=(
            "Where the network's backward working set sits relative to this machine's cache "
            "boundaries, whether it is near one (1x-2x of a level's capacity, where the paper "
            "found training energy lowest) and, if far, how to rescale its widths, with the "
            "model's predicted joules per training sample for each option."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--widths", metavar="IN,W1,...,OUT", default=None,
                   help="input width then the Dense widths, output included")
    p.add_argument("--shape", default=None,
                   help="BUTTER shape: rectangle, trapezoid, exponential, wide_first_{2,4,8,16}x")
    p.add_argument("--depth", default=None, help="number of Dense layers, output included (>= 2)")
    p.add_argument("--size", default=None, help="target number of trainable parameters (NTP)")
    p.add_argument("--inputs", default=None, help="input width (features)")
    p.add_argument("--outputs", default=None, help="output width")
    p.add_argument("--dataset", default=None,
                   help="a BUTTER-E dataset name: sets --inputs, --outputs and --samples")
    p.add_argument("--batch-size", default="256", help="samples per batch (default 256)")
    p.add_argument("--samples", default=None,
                   help="training samples per epoch (adds the dataset working set and J/epoch)")
    p.add_argument("--hardware", default="auto", help="auto, cpu, gpu, butter-e-cpu, butter-e-gpu "
                   "(default auto: this machine)")
    p.add_argument("--cache", action="append", default=[], metavar="LEVEL=SIZE[,UNITS]",
                   help="override a cache level, e.g. L2=2M or L3=32M,2 (repeatable)")
    p.add_argument("--coefficients", default=None, metavar="FILE",
                   help="coefficients JSON from `wattwise fit` (default: the paper's for the hardware)")
    p.add_argument("--set", dest="set_name", default="b", help="working set to judge: b (default) or f")
    p.add_argument("--json", action="store_true", help="print the advice as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="plot predicted J/sample vs NTP for the shape with cache boundaries")
    p.set_defaults(func=run)


LIMITS = {"depth": 100, "size": 10**12, "inputs": 10**9, "outputs": 10**9,
          "batch-size": 10**9, "samples": 10**15, "cache units": 10**6, "widths": 10**9}
"""The largest value each integer option takes: beyond them the model's numbers mean nothing
(and a depth of 10**8 would build a list of 10**8 layers)."""


def _int(name: str, value: Any, minimum: int = 1) -> int | None:
    """``--name`` as an int in ``minimum..LIMITS[name]`` (``_`` allowed as digit separator);
    None stays None."""
    if value is None:
        return None
    try:
        v = int(str(value).replace("_", ""))
    except ValueError:
        raise CLIError(f"--{name} {value!r}: expected an integer") from None
    if not minimum <= v <= LIMITS[name]:
        raise CLIError(f"--{name} {value!r}: expected an integer in {minimum}..{LIMITS[name]:_}")
    return v


def _network(args: argparse.Namespace) -> tuple[int, list[int], str | None, int | None]:
    """-> (n_in, widths, shape, depth)."""
    from wattwise.errors import ConfigurationError
    from wattwise.model.shapes import SHAPES, network_widths

    if args.dataset is not None:
        from wattwise.model.butter_e import dataset_facts

        try:
            facts = dataset_facts(args.dataset)
        except ConfigurationError as e:
            raise CLIError(f"--dataset: {e}") from None
        args.inputs = args.inputs or facts["n_in"]
        args.outputs = args.outputs or facts["n_out"]
        if args.samples is None:
            args.samples = round(0.8 * facts["n_observations"])
    if args.widths is not None:
        if any(v is not None for v in (args.shape, args.depth, args.size)):
            raise CLIError("--widths cannot be combined with --shape/--depth/--size; give one")
        try:
            ws = [int(w) for w in str(args.widths).replace(" ", "").split(",") if w]
        except ValueError:
            raise CLIError(f"--widths {args.widths!r}: expected comma-separated integers, "
                           "e.g. 784,512,512,10") from None
        in_range = all(1 <= w <= LIMITS["widths"] for w in ws)
        if not 2 <= len(ws) <= LIMITS["depth"] + 1 or not in_range:
            raise CLIError(f"--widths {args.widths!r}: need the input width and 1 to "
                           f"{LIMITS['depth']} layer widths, each in 1..{LIMITS['widths']:_}, "
                           "e.g. 784,512,10")
        return ws[0], ws[1:], None, None
    if args.shape is None:
        raise CLIError("describe the network with --widths IN,W1,...,OUT or with --shape, "
                       "--depth, --size, --inputs and --outputs")
    if args.shape not in SHAPES:
        raise CLIError(f"--shape {args.shape!r}: expected one of {', '.join(SHAPES)}")
    depth = _int("depth", args.depth, 2)
    n_in = _int("inputs", args.inputs)
    n_out = _int("outputs", args.outputs)
    for name, v in (("depth", depth), ("inputs", n_in), ("outputs", n_out)):
        if v is None:
            raise CLIError(f"--{name} is required with --shape")
    assert depth is not None and n_in is not None and n_out is not None
    size = _int("size", args.size)
    if size is None:
        if args.plot is None:
            raise CLIError("--size is required with --shape (or use --widths)")
        size = 2**16
    return n_in, network_widths(args.shape, depth, size, n_in, n_out), args.shape, depth


def _hierarchy(args: argparse.Namespace) -> Any:
    from wattwise.errors import ConfigurationError
    from wattwise.hardware import detect_hierarchy

    if args.hardware not in HARDWARE:
        raise CLIError(f"--hardware {args.hardware!r}: expected one of {', '.join(HARDWARE)}")
    overrides: dict[str, Any] = {}
    for item in args.cache:
        name, _, val = item.partition("=")
        if not name or not val:
            raise CLIError(f"--cache {item!r}: expected LEVEL=SIZE[,UNITS], e.g. L2=2M or L3=32M,2")
        size, _, units = val.partition(",")
        overrides[name.strip()] = (size.strip(), _int("cache units", units)) if units else size.strip()
    try:
        with warnings_to_stderr("advise"):
            return detect_hierarchy(args.hardware, overrides=overrides or None)
    except ConfigurationError as e:
        raise CLIError(f"--hardware {args.hardware!r}: {e}") from None


def run(args: argparse.Namespace) -> int:
    from wattwise.errors import ConfigurationError
    from wattwise.model.advise import advise
    from wattwise.model.working_sets import mlp_working_sets
    from wattwise.sizing import resolve_coefficients

    if args.set_name not in ("b", "f"):
        raise CLIError(f"--set {args.set_name!r}: expected b or f")
    if args.plot is not None:
        check_output_file("--plot", args.plot, plot=True)
    n_in, widths, shape, depth = _network(args)
    batch = _int("batch-size", args.batch_size)
    samples = _int("samples", args.samples)
    assert batch is not None
    h = _hierarchy(args)
    try:
        coefs = resolve_coefficients(args.coefficients, h)
    except ConfigurationError as e:
        raise CLIError(f"--coefficients: {e}") from None
    ws = mlp_working_sets(widths, n_in, batch, n_obs=samples)
    advice = advise(ws, h, coefs, n_samples=samples, set_name=args.set_name)
    from wattwise.sizing import advice_json, advice_text

    print(json.dumps(advice_json(advice), indent=2) if args.json else advice_text(advice))
    if args.plot is not None:
        from wattwise.model.curves import ntp_curve

        shape, depth = shape or "rectangle", depth or len(widths)
        curve = ntp_curve(h, coefs, shape=shape, depth=depth, n_in=n_in, n_out=widths[-1],
                          batch_size=batch, n_samples=samples, set_name=args.set_name)
        title = (f"{shape}, depth {depth}, {n_in}->{widths[-1]}, batch {batch} on {h.name}\n"
                 f"BUTTER-E model estimate; shaded: {args.set_name} at 1x-2x of a cache level")
        mark = None if (args.shape and args.size is None) else ws.ntp
        out = plot_ntp_curve(args.plot, curve, title=title, mark_ntp=mark)
        print(f"wrote plot to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def plot_ntp_curve(path: str, curve: NtpCurve, *, title: str, mark_ntp: int | None = None) -> str:
    """Draw a :class:`~wattwise.model.curves.NtpCurve` with its cache boundaries to ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib (pip install 'wattwise[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    ax.plot(curve.ntp, [y * 1e3 for y in curve.joules_per_sample], color="tab:blue", lw=2,
            label="predicted (estimate)")
    colors = ["tab:green", "tab:orange", "tab:red", "tab:purple"]
    for (level, x), col in zip(sorted(curve.boundaries.items(), key=lambda kv: kv[1]), colors):
        ax.axvline(x, color=col, ls="--", lw=1.2, label=f"{curve.set_name} fills {level}")
        near = curve.near_range(level)
        ax.axvspan(x, (near[1] if near else None) or x, color=col, alpha=0.12)
    if mark_ntp is not None:
        ax.axvline(mark_ntp, color="black", lw=1, label=f"this network (NTP {mark_ntp:,})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of trainable parameters (NTP)")
    ax.set_ylabel("predicted training energy per sample (mJ)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise CLIError(f"--plot {path!r}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path
