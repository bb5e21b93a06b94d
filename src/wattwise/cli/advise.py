"""``wattwise advise``: cache-aware sizing advice for an MLP, from the BUTTER-E energy model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from wattwise.cli._common import CLIError, add_subcommand, check_output_file, warnings_to_stderr

if TYPE_CHECKING:
    from wattwise.model.advise import Advice
    from wattwise.model.curves import BatchCurve, NtpCurve

EPILOG = """\
examples:
  wattwise advise --widths 784,512,512,10 --batch-size 256
  wattwise advise --widths 64,128,128,10 --batch-size 64 --batch-range 8:4096 --json
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
            "found the energy to reach a loss lowest), and the options: other batch sizes for "
            "the same network first, then (if far) rescaled widths, each with the model's "
            "predicted joules per training sample and per epoch, its error band, and memory."
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
    p.add_argument("--batch-range", default="16:1024", metavar="MIN:MAX",
                   help="batch sizes the advice considers: the powers of two in MIN..MAX and "
                        "--batch-size (default 16:1024)")
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
                   help="plot predicted J/sample vs batch size (this network, the options "
                        "marked) and vs NTP (the shape), with where b fills each cache level")
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


def _batch_range(value: str) -> tuple[int, int]:
    """``--batch-range MIN:MAX`` as two ints, ``1 <= MIN <= MAX``."""
    lo, sep, hi = str(value).partition(":")
    try:
        lo_i, hi_i = int(lo.replace("_", "")), int(hi.replace("_", ""))
    except ValueError:
        lo_i = hi_i = 0
    if not sep or not 1 <= lo_i <= hi_i <= LIMITS["batch-size"]:
        raise CLIError(f"--batch-range {value!r}: expected MIN:MAX, two integers with "
                       f"1 <= MIN <= MAX <= {LIMITS['batch-size']:_}, e.g. 16:1024")
    return lo_i, hi_i


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
    batch_range = _batch_range(args.batch_range)
    samples = _int("samples", args.samples)
    assert batch is not None
    h = _hierarchy(args)
    try:
        coefs = resolve_coefficients(args.coefficients, h)
    except ConfigurationError as e:
        raise CLIError(f"--coefficients: {e}") from None
    ws = mlp_working_sets(widths, n_in, batch, n_obs=samples)
    advice = advise(ws, h, coefs, n_samples=samples, set_name=args.set_name,
                    batch_range=batch_range)
    from wattwise.sizing import advice_json, advice_text

    print(json.dumps(advice_json(advice), indent=2) if args.json else advice_text(advice))
    if args.plot is not None:
        from wattwise.model.curves import batch_curve, ntp_curve

        shape, depth = shape or "rectangle", depth or len(widths)
        curve = ntp_curve(h, coefs, shape=shape, depth=depth, n_in=n_in, n_out=widths[-1],
                          batch_size=batch, n_samples=samples, set_name=args.set_name)
        bcurve = batch_curve(ws, h, coefs, min_batch=max(1, min(batch_range[0], batch) // 2),
                             max_batch=max(batch_range[1], batch) * 2, set_name=args.set_name)
        title = (f"{shape}, depth {depth}, {n_in}->{widths[-1]} on {h.name}: BUTTER-E model "
                 f"estimates (coefficients {coefs.source.split(':')[0] or 'given'})")
        mark = None if (args.shape and args.size is None) else ws.ntp
        out = plot_advice(args.plot, advice, curve, bcurve, title=title, mark_ntp=mark)
        print(f"wrote plot to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


PLOT_CAPTION = (
    "Dashed lines: where {set} fills a cache level (footprint = capacity). The paper found the "
    "energy to reach a loss lowest at 1x-2x of such a line; the model predicts energy per step "
    "(drawn here), which has no minimum there: it falls with the batch size and rises with NTP, "
    "stepping where a working set spills."
)


def plot_advice(path: str, advice: Advice, curve: NtpCurve, bcurve: BatchCurve, *, title: str,
                mark_ntp: int | None = None) -> str:
    """Draw the advice to ``path``: predicted J/sample against batch size for this network (the
    batch-size options marked, with their error bands) and against NTP for its shape (the width
    options marked), with the sizes where the judged set fills each cache level. Nothing is
    shaded: the model's per-step curves have no minimum at the boundaries."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib (pip install 'wattwise[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(("L1", "L2", "L3"), ("tab:green", "tab:orange", "tab:red")))
    fig, (ax_b, ax_n) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    err = advice.error
    band = "no error band (coefficients without cv_error)" if err is None else \
        f"bars: ±{100 * err:.3g} % (the coefficients' cross-validated error)"

    ax_b.plot(bcurve.batch_sizes, [y * 1e3 for y in bcurve.joules_per_sample], color="tab:blue",
              lw=2, label="predicted, this network")
    opts = advice.batch_options
    for o in opts:
        lo, hi = o.joules_per_sample_band or (o.joules_per_sample, o.joules_per_sample)
        y = o.joules_per_sample * 1e3
        style = ("*", 14, "gold") if o is advice.best else (
            ("s", 8, "black") if o.direction == "current" else ("o", 6, "tab:blue"))
        ax_b.errorbar([o.batch_size], [y], yerr=[[y - lo * 1e3], [hi * 1e3 - y]],
                      fmt=style[0], ms=style[1], color=style[2], mec="black", capsize=3, zorder=3)
    ax_b.plot([], [], "*", ms=12, color="gold", mec="black", label="best option")
    ax_b.plot([], [], "s", ms=7, color="black", label=f"current (batch {advice.working_sets.batch_size})")
    for level, x in sorted(bcurve.boundaries.items(), key=lambda kv: kv[1]):
        ax_b.axvline(x, color=colors.get(level, "tab:purple"), ls="--", lw=1.2,
                     label=f"{bcurve.set_name} fills {level}")
    ax_b.set_xscale("log", base=2)
    ax_b.set_yscale("log")
    ax_b.set_xlabel("batch size (samples)")
    ax_b.set_ylabel("predicted training energy per sample (mJ)")
    ax_b.set_title(f"same network, other batch sizes; {band}", fontsize=8)

    ax_n.plot(curve.ntp, [y * 1e3 for y in curve.joules_per_sample], color="tab:blue", lw=2,
              label=f"predicted, this shape at batch {advice.working_sets.batch_size}")
    for level, x in sorted(curve.boundaries.items(), key=lambda kv: kv[1]):
        ax_n.axvline(x, color=colors.get(level, "tab:purple"), ls="--", lw=1.2,
                     label=f"{curve.set_name} fills {level}")
    if mark_ntp is not None:
        ax_n.plot([mark_ntp], [advice.joules_per_sample * 1e3], "s", ms=7, color="black",
                  label=f"this network (NTP {mark_ntp:,})")
    for o in advice.width_options:
        shown = o in advice.options
        ax_n.plot([o.ntp], [o.joules_per_sample * 1e3], "D", ms=6,
                  color="tab:blue" if shown else "white", mec="black",
                  label=f"width option: {o.direction}" + ("" if shown else " (within error band)"))
    ax_n.set_xscale("log")
    ax_n.set_yscale("log")
    ax_n.set_xlabel("number of trainable parameters (NTP)")
    ax_n.set_title("other widths (another model)", fontsize=8)
    for ax in (ax_b, ax_n):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.text(0.01, 0.01, PLOT_CAPTION.format(set=advice.set_name), fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    try:
        fig.savefig(path)
    except OSError as e:
        raise CLIError(f"--plot {path!r}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path
