"""The ``chainlab`` command line (typer).

Commands: ``summary`` (per-layer table of a few chains), ``extract`` (chains of a net under a rule
into an HDF5 archive, see :mod:`chainlab.archive`), ``measure`` (tidy measure records of archived
chains as CSV, see :mod:`chainlab.measures`), ``report`` (Markdown + PNG plots of a measures CSV,
see :mod:`.report`) and ``verify`` (the papers' claims, see :mod:`.verify`).

The CLI is the only place that knows about files, progress bars and exit codes.  User errors
(:class:`chainlab.errors.ChainlabError`: bad input, unknown model or rule, missing files, bad ranges)
and I/O errors are printed as one ``chainlab: error: …`` line with exit code 2; anything else is a
bug in chainlab, printed as ``chainlab: internal error …`` with exit code 3 and a hint to rerun with
``--debug``, which shows the traceback.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import List, Optional

import click
import torch
import typer
from tqdm import tqdm

from .. import archive, measures
from ..errors import ChainlabError, InputError, MissingFileError, OptionError
from ..extraction import COMMON, METHODS, extract
from ..files import on_failure, write_bytes
from ..memory import keep_freed_memory
from ..measures import singular_values
from ..nets import data as _data
from ..nets import models
from ..nets.architectures import INPUT_SHAPES
from ..nets.storage import state_fingerprint
from ..options import check_known
from ..rules import resolve
from ..studies import averages, sanity
from . import distributed, own, report, verify

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The backward pass of a trained PyTorch network as an explicit chain of matrices.")

STATE = {"debug": False}

SUMMARY_RULES = ["gradient", "lrp-0", "zplus", "alpha-beta", "epsilon-plus"]
SUMMARY_NETS = ("digits-mlp", "digits-cnn", "sixt-cifar")      # one of each input kind, the fastest
BOX_RULES = ("zbox", "lrp-cmp", "dtd")          # rules that need the input box [low, high]
MODEL_MEASURES = {"averages": averages, "sanity": sanity}   # measures that re-run the model (--model)
MODEL_OPTIONS = {p for fn in MODEL_MEASURES.values() for p, v in inspect.signature(fn).parameters.items()
                 if v.kind is v.KEYWORD_ONLY and p != "extract"}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    STATE["debug"] = debug


def _fail(msg: str, code: int):
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _user_errors(fn):
    """User errors of a command → one line on stderr and exit code 2; other exceptions are bugs (exit 3 with the
    --debug hint).  Every command carries it: this is the one place in chainlab that catches every exception, and it
    decides nothing — it only reports."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ChainlabError, OSError) as exc:
            if STATE["debug"]:
                raise
            msg = str(exc).strip()
            _fail(f"chainlab: error: {msg.splitlines()[0] if msg else type(exc).__name__}", 2)
        except Exception as exc:  # noqa: BLE001 — the one place a bug meets the user: reported as one, never decided on
            if STATE["debug"]:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _fail(f"chainlab: internal error (a bug in chainlab, please report it): {type(exc).__name__}: {first} — "
                  "rerun with --debug for the traceback", 3)

    return wrapper


def parse_range(spec: str, n: int) -> list[int]:
    """'0:5' → [0..4], '3' → [3], '1,4,7' → [1, 4, 7]; checked against n items, no repeats.

    A 'start:stop' range is checked by its ends before any list is built (0:10**20 or 0:10**9 is one error
    line, not an OverflowError or a list of a billion ints)."""
    bad_format = InputError(f"bad image range {spec!r}: use 'start:stop', 'i' or 'i,j,k'")
    try:
        if ":" in spec:
            a, _, b = spec.partition(":")
            start, stop = int(a) if a.strip() else 0, int(b) if b.strip() else n
            if start >= stop:
                raise InputError(f"image range {spec!r} selects nothing; there are {n} test images (0..{n - 1})")
            below = range(start, min(stop, 0))              # the selected indices outside 0..n-1, never listed whole
            above = range(max(start, n), stop)
            n_bad = max(min(stop, 0) - start, 0) + max(stop - max(start, n), 0)   # len() overflows beyond 2**63
            if n_bad:
                first = (list(below[:5]) + list(above[:5]))[:5]
                shown = str(first)[:-1] + (f", … ({n_bad} in all)]" if n_bad > 5 else "]")
                raise InputError(f"image range {spec!r} selects {shown}; there are {n} test images (0..{n - 1})")
            return list(range(start, stop))
        idx = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise bad_format from None
    bad = [i for i in idx if not 0 <= i < n]
    if not idx or bad:
        shown = (str(bad[:5])[:-1] + (f", … ({len(bad)} in all)]" if len(bad) > 5 else "]")) if bad else "nothing"
        raise InputError(f"image range {spec!r} selects {shown}; there are {n} test images (0..{n - 1})")
    if len(set(idx)) != len(idx):
        raise InputError(f"image range {spec!r} names an image more than once")
    return idx


def layer_table(chain) -> str:
    """One row per operator: layer, rule, shape, nnz, column-sum min/max, σ1."""
    rows = [("#", "layer", "rule", "shape (n_in × n_out)", "nnz", "colsum min", "colsum max", "σ1")]
    for i, (op, name, rule) in enumerate(zip(chain, chain.names, chain.layer_rules)):
        cs = op.column_sums()
        s1 = singular_values(op, 1)[0]
        rows.append((str(i), name, rule, f"{op.shape[0]} × {op.shape[1]}", f"{op.nnz:,}", f"{cs.min():.4g}",
                     f"{cs.max():.4g}", f"{s1:.4g}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.rjust(w) if c in (0, 4, 5, 6, 7) else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dataset_of(net_name: str, dataset: str | None) -> str:
    """The dataset whose test images feed a net: ``dataset`` if given, else scenes for 32×32 RGB nets, digits else."""
    if dataset is not None:
        if dataset not in _data.DATASETS:
            raise OptionError(f"--dataset must be one of {', '.join(_data.DATASETS)}, got {dataset!r}")
        return dataset
    return "scenes" if INPUT_SHAPES.get(net_name) == (1, 3, 32, 32) else "digits"


def rule_defaults(rule: str, opts: dict) -> dict:
    """``opts`` with the input box of the shipped data filled in for rules that need one (z^B, lrp-cmp, dtd)."""
    if rule in BOX_RULES:
        lo, hi = _data.INPUT_BOUNDS
        opts = {"low": lo, "high": hi, **opts}
    return opts


@app.command()
@_user_errors
def summary(
    models_: List[str] = typer.Option(None, "--model", "-m", help="Shipped net(s) (default: digits-mlp, digits-cnn, sixt-cifar)."),
    rules: List[str] = typer.Option(None, "--rule", "-r", help=f"Rule(s) (default: {', '.join(SUMMARY_RULES)})."),
    images: str = typer.Option("0:2", "--images", help="Test images: 'start:stop', 'i' or 'i,j'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="digits or scenes (default: scenes for the "
                                          "32×32 RGB nets, digits for the digits nets)."),
):
    """Extract the chains of the shipped nets for a few test images and print a per-layer table."""
    names = list(models_) if models_ else list(SUMMARY_NETS)
    rules = list(rules) if rules else SUMMARY_RULES
    nets = {n: models.load(n) for n in names}
    sets = {n: _data.test_set(dataset_of(n, dataset)) for n in names}
    for n, i, r in tqdm([(n, i, r) for n in names for i in parse_range(images, len(sets[n][1])) for r in rules],
                        desc="extract", unit="chain", file=sys.stderr):
        xs, ys = sets[n]
        x = _data.model_input(n, xs[i:i + 1])
        t0 = time.perf_counter()
        chain = extract(nets[n], x, r, **rule_defaults(r, {}))
        dt = time.perf_counter() - t0
        expl = chain.explain()
        tqdm.write(
            f"\n{n} · test image {i} (label {ys[i]}, predicted {chain.predicted}, "
            f"logit {chain.logits[chain.predicted]:.3f}) · rule {r} · {len(chain)} operators extracted in {dt:.2f}s\n"
            f"explanation: sum {expl.sum():.4g}, min {expl.min():.4g}, max {expl.max():.4g}\n" + layer_table(chain),
            file=sys.stdout,
        )


# -- options ---------------------------------------------------------------------------------------
def parse_options(items) -> dict:
    """['epsilon=0.1', 'name=foo', 'pairs=[1,2]'] → {'epsilon': 0.1, 'name': 'foo', 'pairs': [1, 2]}.

    Values are read as JSON (numbers, true/false, lists, quoted strings), else kept as strings; what
    a value must be is checked by whoever takes the option (a string where a number belongs is refused
    there, naming the option).
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace("-", "").isalnum():
            raise OptionError(f"bad option {item!r}: use key=value, e.g. --option epsilon=0.1")
        if key in out:
            raise OptionError(f"option {key!r} given twice")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingFileError(f"{what} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")
    return path


def _output_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name")
    if not path.parent.exists():
        raise MissingFileError(f"output directory {path.parent} does not exist")
    return path


def _net_name(spec: str, model) -> str:
    if spec in models.NAMES:
        return spec
    return getattr(model, "name", None) or Path(spec).stem


def _check_rule_options(rule: str, opts: dict, kwargs: dict):
    """Refuse an unknown rule or option before anything is loaded (same errors as extract)."""
    if rule in METHODS:
        m = METHODS[rule]
        check_known({**opts, **kwargs}, m.own, f"rule {rule!r}", common=m.common)
    else:
        _, _, takes = resolve(rule, {k: v for k, v in opts.items() if k not in COMMON})
        check_known(opts, takes, f"rule {rule!r}", common=COMMON)


# -- extract ---------------------------------------------------------------------------------------
@app.command("extract")
@_user_errors
def extract_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Shipped net name (digits-mlp, digits-cnn, sixt-cifar, …) or "
                              "a chainlab model file (.npz written by chainlab.models.save)."),
    rule: str = typer.Option(..., "--rule", "-r", help="Rule or composite name (gradient, lrp-epsilon, zplus, …)."),
    output: Path = typer.Option(..., "--output", "-o", help="Archive to write (HDF5)."),
    images: str = typer.Option("0:1", "--images", help="Test images: 'start:stop', 'i' or 'i,j,k'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="digits or scenes (default: scenes for the "
                                          "32×32 RGB nets, digits for the digits nets)."),
    option: List[str] = typer.Option(None, "--option", "-O", help="Rule option key=value (repeatable), e.g. epsilon=0.1."),
    bias: Optional[str] = typer.Option(None, "--bias", help="Bias policy: zennit (default), none or full."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Operator storage type: float64 (default) or float32."),
    stabilizer: Optional[float] = typer.Option(None, "--stabilizer", help="ε of the denominators' stabilizer (1e-6)."),
    avgpool: Optional[str] = typer.Option(None, "--avgpool", help="Average-pool matrix: proportional (default) or gradient."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="State-dict file (.pt/.pth/.npz) for the "
                                           "architecture named by --model (read as data, never as code)."),
    resume: bool = typer.Option(False, "--resume", help="Keep the archive and skip chains already in it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing archive."),
    workers: int = typer.Option(1, "--workers", help="N > 1: extract on a dask LocalCluster of N worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler "
                                            "(tcp://host:port) to extract on."),
):
    """Extract the chain of every selected test image and append it to an HDF5 archive, chain by chain.

    Each chain is appended as soon as it is extracted (its own file, then the archive's index), so an
    interruption loses nothing finished; rerun with --resume to continue.  chain.meta gets net, image,
    label, fingerprint and the request (rule, options) by which a chain is recognized: a chain already in
    the archive (written by an earlier run or by another process writing the same archive now) is never
    stored twice.  Writers take the archive's lock for each append (a second writer waits for it).
    After the first chain the space the rest needs is estimated and a run that cannot fit is refused.
    --overwrite builds the new archive beside the old one and replaces it only when every chain is in.
    With --workers N > 1 or --scheduler the images are extracted as one dask task each
    (:func:`chainlab.app.distributed.run`); this process stays the single writer, and the archive keys
    follow the requested image order whatever order the results arrive in.
    """
    opts = rule_defaults(rule, parse_options(option))
    kwargs = {k: v for k, v in dict(bias=bias, dtype=dtype, stabilizer=stabilizer, avgpool=avgpool).items()
              if v is not None}
    _check_rule_options(rule, opts, kwargs)
    _output_file(output, "output")
    if output.exists() and not (resume or overwrite):
        raise InputError(f"{output} exists; use --resume to add to it (skipping chains it has) or --overwrite")
    if resume and overwrite:
        raise InputError("give --resume (add to the archive) or --overwrite (replace it), not both")
    _check_cluster(workers, scheduler)

    net = models.load(model, weights=weights) if weights is not None else models.load(model)
    name = _net_name(model, net)
    data_name = dataset_of(name, dataset)
    xs, ys = _data.test_set(data_name)
    idx = parse_range(images, len(ys))
    fp = state_fingerprint(net)
    request = dict(rule=rule, options=opts, dataset=data_name, **kwargs)
    req_id = json.dumps(request, sort_keys=True)
    if (workers > 1 or scheduler is not None) and weights is not None:
        raise InputError("--workers/--scheduler load the model by name or model file in each worker; "
                         "--weights is for serial extraction")

    def note(msg):
        tqdm.write(msg, file=sys.stderr)

    # --overwrite: one writer for the whole run, committed only when complete
    replacing = archive.writer(output, replace=True, on_wait=note) if overwrite else None
    with on_failure(lambda: replacing is not None and replacing.close(commit=False)):
        store = _ChainStore(output, replacing, name, fp, req_id, note)
        todo = [i for i in idx if not store.has(i)]
        if len(todo) < len(idx):
            note(f"resume: {len(idx) - len(todo)} of {len(idx)} chains already in {output}")
        options = {**kwargs, **opts}
        keys = store.reserve(todo) if (workers > 1 or scheduler is not None) else {}

        def write(i, chain):   # the single writer: meta, then one locked append per chain
            chain.meta.update(net=name, image=int(i), label=int(ys[i]), dataset=data_name, fingerprint=fp,
                              request=request)
            return store.add(i, chain, keys.get(i), remaining=len(todo))

        if workers > 1 or scheduler is not None:
            model_ref = model if model in models.NAMES else str(Path(model).resolve())
            task = functools.partial(distributed.extract_image, **options)
            tasks = {int(i): (task, (model_ref, _data.model_input(net, xs[i:i + 1]), rule, int(i), name))
                     for i in todo}
            rep = distributed.run(tasks, write, workers=workers, scheduler=scheduler, progress=True)
            mode = f" on {rep.mode}, {rep.rate:.2f} chains/s"
        else:
            bar = tqdm(todo, desc=f"extract {name} {rule}", unit="chain", file=sys.stderr)
            for i in bar:
                if store.has(i):          # another process wrote it meanwhile
                    continue
                x = _data.model_input(net, xs[i:i + 1])
                key = write(i, extract(net, x, rule, **options))
                bar.set_postfix(key=key, image=i)
            mode = ""
    if replacing is not None:
        replacing.close()
    typer.echo(f"{output}: {store.added} chain(s) added ({name}, {rule}, images {images}){mode}"
               + (f"; {store.skipped} already there" if store.skipped else ""))


class _ChainStore:
    """The extract command's view of its archive: which images it holds for this (net, weights, request),
    and one locked append per chain that skips an image another writer stored meanwhile."""

    def __init__(self, path: Path, replacing, net, fingerprint, req_id, note):
        self.path, self.replacing, self.note = path, replacing, note
        self.ident = (net, fingerprint, req_id)
        self.seen, self.done = set(), set()
        self.added = self.skipped = 0
        self.first_size = None
        if replacing is None and path.exists():
            with archive.open(path) as r:
                self._scan(r)

    def _scan(self, reader):
        """Read the metadata of the chains not seen yet (O(new chains))."""
        for k in reader.keys():
            if k in self.seen:
                continue
            self.seen.add(k)
            info = reader.info(k)
            m = info["meta"]
            if (info["net"], info["fingerprint"], json.dumps(m.get("request"), sort_keys=True)) == self.ident:
                self.done.add(m.get("image"))

    def has(self, i) -> bool:
        """Whether image ``i`` is stored (a lock-free look at chains added since the last look)."""
        if self.replacing is None and self.path.exists():
            with archive.open(self.path) as r:
                self._scan(r)
        return i in self.done

    def reserve(self, todo) -> dict:
        """Keys for the images ``todo``, in their order (results may arrive in any order)."""
        if self.replacing is not None:
            return dict(zip(todo, self.replacing.reserve(len(todo))))
        with archive.writer(self.path, on_wait=self.note) as w:
            return dict(zip(todo, w.reserve(len(todo))))

    def add(self, i, chain, key, remaining):
        if self.replacing is not None:
            key = self.replacing.append(chain, key)
            size = self.replacing.entries[key][1]
        else:
            with archive.writer(self.path, on_wait=self.note) as w:
                with w.reader() as r:
                    self._scan(r)
                if i in self.done:
                    self.skipped += 1
                    return None
                key = w.append(chain, key)
                size = w.entries[key][1]
        self.seen.add(key)
        self.done.add(i)
        self.added += 1
        if self.first_size is None:           # estimate the rest from the first chain; refuse a run that cannot fit
            self.first_size = size
            rest = remaining - 1
            if rest > 0:
                archive.check_space(self.path, int(size * rest * 1.1),
                                    f"the remaining {rest} chain(s) of this run (≈ {size / 1e6:.1f} MB each, "
                                    "estimated from the first; nothing more was extracted)")
        return key


def _check_cluster(workers, scheduler):
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None and workers > 1:
        raise InputError("give either --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    if workers > 1 or scheduler is not None:
        try:
            import distributed as _dask_distributed  # noqa: F401 — optional dependency, checked only here
        except ImportError:
            raise InputError("--workers/--scheduler need dask.distributed: pip install 'chainlab[dask]'") from None


# -- measure ---------------------------------------------------------------------------------------
@app.command("measure")
@_user_errors
def measure_cmd(
    chains: Path = typer.Argument(..., help="Chain archive written by 'chainlab extract'."),
    what: str = typer.Option("spectra,rank1,csc,cone,bounds", "--what", "-w",
                             help="Comma-separated measures: spectra, rank1, csc, cone, bounds, averages, sanity."),
    output: Path = typer.Option(..., "--output", "-o", help="CSV of tidy records to write."),
    option: List[str] = typer.Option(None, "--option", "-O", help="Measure option key=value (repeatable)."),
    keys: Optional[str] = typer.Option(None, "--keys", help="Comma-separated chain keys (default: all)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model of the chains, for the measures "
                                        "that re-run it (averages, sanity): a shipped net name or a chainlab model "
                                        "file. Never taken from the archive."),
    workers: int = typer.Option(1, "--workers", help="N > 1: measure on a dask LocalCluster of N worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler "
                                            "(tcp://host:port) to measure on."),
):
    """Run measures on archived chains and write tidy records (net, rule, image, measure, quantity, layer, k, value).

    With --workers N > 1 or --scheduler every chain is one dask task (and every (net, rule) group of a
    pooled measure such as csc another) that reads its chain from the archive and returns records;
    the records are written in the same order as a serial run's.
    """
    _existing(chains, "chain archive")
    _output_file(output, "output")
    names = [w.strip() for w in what.split(",") if w.strip()]
    if not names:
        raise OptionError("--what names no measure")
    opts = parse_options(option)
    known = list(measures.MEASURES) + list(MODEL_MEASURES)
    unknown = [w for w in names if w not in known]
    if unknown:
        raise OptionError(f"unknown measure(s) {', '.join(unknown)}; available: {', '.join(known)}")
    run_chain = [w for w in names if w in measures.PER_CHAIN]
    run_model = [w for w in names if w in MODEL_MEASURES]
    run_pooled = [w for w in names if w in measures.POOLED]
    taken = measures.measure_options(run_chain + run_pooled) | (MODEL_OPTIONS if run_model else set())
    check_known(opts, taken, f"the measures {', '.join(names)}")
    if run_model and model is None:
        raise OptionError(f"measure(s) {', '.join(run_model)} re-run the model: name it with --model (chainlab never "
                          "loads a model path found inside an archive)")
    _check_cluster(workers, scheduler)

    chain_opts = {k: v for k, v in opts.items() if k in measures.measure_options(run_chain)} if run_chain else {}
    pooled_opts = {k: v for k, v in opts.items() if k in measures.measure_options(run_pooled)} if run_pooled else {}
    model_opts = {k: v for k, v in opts.items() if k not in measures.measure_options(run_chain + run_pooled)}
    plan = dict(run_chain=run_chain, chain_opts=chain_opts, run_model={w: model_opts for w in run_model},
                model=model)
    with archive.open(chains) as r:
        sel = r.keys() if keys is None else [k.strip() for k in keys.split(",") if k.strip()]
        missing = [k for k in sel if k not in r]
        if missing:
            raise InputError(f"{chains} has no chain(s) {', '.join(missing)}")
        if not sel:
            raise InputError(f"{chains} holds no chains")
        groups = {}
        if run_pooled:
            for key in sel:
                info = r.info(key)
                groups.setdefault((info["net"], info["rule"]), []).append(key)
        if workers > 1 or scheduler is not None:
            path = str(chains.resolve())
            tasks = {("chain", k): (measure_task, (path, [k], plan, None)) for k in sel if run_chain or run_model}
            tasks.update({("pooled", g): (measure_task, (path, ks, None, dict(what=run_pooled, opts=pooled_opts)))
                          for g, ks in groups.items()})
            got = {}
            distributed.run(tasks, got.__setitem__, workers=workers, scheduler=scheduler, progress=True)
            rows = [row for t in tasks for row in got[t]]   # serial order, whatever the arrival order
        else:
            rows = []
            for key in tqdm(sel if (run_chain or run_model) else [], desc="measure", unit="chain", file=sys.stderr):
                rows += measure_chain(r.load(key), plan)
            for (net, rule), ks in tqdm(groups.items(), desc="measure (pooled)", unit="group", file=sys.stderr):
                rows += measures.measure([r.load(k) for k in ks], what=run_pooled, **pooled_opts)
    measures.write_csv(rows, output)
    typer.echo(f"{output}: {len(rows)} records ({', '.join(names)}) from {len(sel)} chain(s)")


def measure_chain(chain, plan) -> list[dict]:
    """Records of the per-chain measures ``plan["run_chain"]`` and the model measures ``plan["run_model"]``."""
    rows = []
    if plan["run_chain"]:
        rows += measures.measure([chain], what=plan["run_chain"], **plan["chain_opts"])
    for w, o in plan["run_model"].items():
        net = distributed.cached_model(plan["model"]).double()
        x = torch.from_numpy(chain.x.reshape(chain.input_shape))
        got = MODEL_MEASURES[w](net, x, chain.rule, **o)
        for row in got:
            for k in ("net", "image"):
                if row.get(k) is None:
                    row[k] = chain.meta.get(k)
        rows += got
    return rows


def measure_task(path: str, keys, plan, pooled) -> list[dict]:
    """A dask task: read chain(s) ``keys`` from the archive at ``path`` and return their records
    (per-chain ``plan`` for one key, or the ``pooled`` measures of a group of keys)."""
    with archive.open(path) as r:
        if pooled is None:
            return measure_chain(r.load(keys[0]), plan)
        return measures.measure([r.load(k) for k in keys], what=pooled["what"], **pooled["opts"])


# -- report ----------------------------------------------------------------------------------------
@app.command("report")
@_user_errors
def report_cmd(
    measures_csv: Path = typer.Argument(..., help="Tidy measures CSV written by 'chainlab measure'."),
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Report directory (made if missing)."),
    chains: Optional[Path] = typer.Option(None, "--chains", help="Chain archive for example heatmaps per rule."),
):
    """A Markdown report with PNG plots of the measures found in the CSV (and heatmaps from --chains)."""
    _existing(measures_csv, "measures file")
    if chains is not None:
        _existing(chains, "chain archive")
    if output.exists() and not output.is_dir():
        raise InputError(f"report output {output} exists and is not a directory")
    records = report.read_records(measures_csv)
    md = report.make_report(records, output, chains=chains, source=measures_csv, progress=True)
    typer.echo(f"{md}: report with {len(list(output.glob('*.png')))} plot(s)")


def _run_facts(kind: str, measuring: float, total: float, load: float, workers: int = 1, pool=None) -> dict:
    """What a verify run cost: seconds of measuring and in all (with the report), peak RSS in MiB, the worker
    processes, the cores and the load average at the start — the README's run line is generated from it.  With
    worker processes (``pool``: what :func:`chainlab.app.verify.pool.measure` found) the peak is an upper bound on
    the run's: the largest of this process's peak and, while the workers ran, this process's peak plus theirs;
    ``peak_rss_sampled_mib`` is the largest sum seen; ``seconds_pool`` the workers' wall time, ``seconds_by_group``
    their seconds per claim and net (summed over the workers)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"kind": kind, "seconds_measuring": round(measuring, 1), "seconds_total": round(total, 1),
           "workers": workers, "cores": os.cpu_count(), "load_at_start": round(load, 2)}
    if pool:
        peak = max(peak, pool["peak_bound_mib"])
        out["peak_rss_sampled_mib"] = round(max(pool["peak_sampled_mib"], 0.0))
        out["seconds_pool"] = round(pool["seconds_wall"], 1)
        out["seconds_by_group"] = {g: round(t, 1) for g, t in pool["seconds_by_group"].items()}
    out["peak_rss_mib"] = round(peak)
    return out


@app.command("verify")
@_user_errors
def verify_cmd(
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Report directory (made if missing)."),
    quick: bool = typer.Option(False, "--quick", help="CI-sized run: digits nets only, fewer images and pairs."),
    extended: bool = typer.Option(False, "--extended", help="More of the papers' protocols (Sixt: App. F injection "
                                  "points, Figs. 1/4b on every net, all DeepLIFT ± injections)."),
    claims: Optional[str] = typer.Option(None, "--claims", help="Comma-separated subset, e.g. S1,S3,B1."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a claim is not reproduced."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Your net instead of the shipped ones: a shipped "
                                        "net's name, torchvision:NAME (vgg11…vgg19[_bn], resnet18…resnet152), a "
                                        "chainlab model file, or FILE.py:FUNCTION returning the nn.Module."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="State-dict file (.pt/.pth/.npz) for --model "
                                           "(read as data: torch.load(weights_only=True)); without it an "
                                           "architecture is randomly initialized (seed --seed)."),
    images: Optional[Path] = typer.Option(None, "--images", help="With --model: a folder of PNG/JPEG images "
                                          "(sorted by name) or a .npy array (N, C, H, W)."),
    preprocess: Optional[str] = typer.Option(None, "--preprocess", help="imagenet (resize 256, centre crop 224, "
                                             "ImageNet mean/std), unit (pixels/255) or none. Default: imagenet for "
                                             "torchvision:NAME, none for .npy, unit otherwise."),
    n_images: Optional[int] = typer.Option(None, "--n-images", help="How many of the images (the first N); default: "
                                           "as many as fit about 15 minutes on 2 cores (from the net's size), at "
                                           "most the paper's number."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class labels of the images (.npy or one integer "
                                          "per line); default: the net's predictions."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random init (no --weights) and of the claims' draws."),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="Images per stored chunk (the unit of --resume and of a "
                                        "Dask task); default: 1 for nets above 0.2 G multiply-adds, else 50."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted --model run in --output."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes that measure the image chunks. The "
                                          "shipped nets: a pool of N single-threaded processes (default: the cores, "
                                          "at most 2; 1 with --quick); with --model, N > 1: a dask LocalCluster "
                                          "(default 1)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler "
                                            "(tcp://host:port); its workers must see the same files."),
):
    """The main job: reproduce the papers' claims (S1–S8, B1–B3, M1–M3) on the shipped nets, or with --model and
    --images on your own net; writes <output>/verify.md."""
    if output.exists() and not output.is_dir():
        raise InputError(f"report output {output} exists and is not a directory")
    wanted = None
    if claims is not None:
        wanted = [c.strip() for c in claims.split(",") if c.strip()]
        if not wanted:
            raise OptionError("--claims names no claim; leave it out to check every claim")
    own_opts = {"--weights": weights, "--images": images, "--preprocess": preprocess, "--n-images": n_images,
           "--labels": labels, "--chunk": chunk, "--resume": resume or None, "--scheduler": scheduler}
    if model is None:
        given = [k for k, v in own_opts.items() if v is not None]
        if given:
            raise OptionError(f"{', '.join(given)} belong to a run on your own net: give --model (and --images)")
    else:
        if images is None:
            raise OptionError("--model needs --images: a folder of PNG/JPEG images or a .npy array")
        if quick:
            raise OptionError("--quick runs the shipped digits nets; leave it out with --model")
        if n_images is not None and n_images < 1:
            raise OptionError(f"--n-images must be at least 1, got {n_images}")
        if chunk is not None and chunk < 1:
            raise OptionError(f"--chunk must be at least 1, got {chunk}")
        workers = 1 if workers is None else workers
        _check_cluster(workers, scheduler)
        res = own.verify_own(model=model, images=images, weights=weights, preprocess=preprocess, n_images=n_images,
                         labels=labels, claims=wanted, output=output, resume=resume, workers=workers, chunk=chunk,
                         scheduler=scheduler, extended=extended, seed=seed, echo=typer.echo)
        if strict and any(v.outcome is not verify.Outcome.REPRODUCED for v in res.verdicts
                          if v.outcome is not verify.Outcome.NOT_CHECKED):
            raise typer.Exit(1)
        return
    if workers is None:
        workers = 1 if quick else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    pool = {}
    verdicts, records = verify.run(quick=quick, claims=wanted, progress=True, extended=extended, workers=workers,
                                   facts=pool)
    seconds = time.perf_counter() - t0
    # the verdicts and records first: a failure while drawing the plots must not lose an hour of measuring
    kind = "--quick run" if quick else "--extended run" if extended else "full run"
    flags = " --quick" if quick else " --extended" if extended else ""
    md = verify.write_run(verdicts, records, output, run_text=f"Run: {kind}, {seconds:.0f} s of measuring.",
                          rerun=f"chainlab verify{flags}" + (f" --claims {claims}" if claims else ""),
                          kind=kind, claims=[v.claim for v in verdicts])
    width = max(len(v.label) for v in verdicts)
    for v in verdicts:
        typer.echo(f"{v.claim}  {v.label:<{width}}  {v.observed[:160]}")
    c = verify.tally(verdicts)
    typer.echo(f"papers' claims: {c.get(verify.Outcome.REPRODUCED, 0)} reproduced, "
               f"{c.get(verify.Outcome.NOT_REPRODUCED, 0)} not reproduced, {c.get(verify.Outcome.INCONCLUSIVE, 0)} "
               f"inconclusive, {c.get(verify.Outcome.NOT_CHECKED, 0)} not checked in {seconds:.0f} s; verdicts in {md}")
    report.make_report(records, output, source=output / "records", progress=True)
    facts = _run_facts(kind, seconds, time.perf_counter() - t0, load, workers, pool)
    write_bytes(output / "run.json", json.dumps(facts, indent=1, sort_keys=True).encode() + b"\n")
    n_ok = c.get(verify.Outcome.REPRODUCED, 0)
    if strict and n_ok < sum(c.values()):
        raise typer.Exit(1)


def main():
    """Console entry point: run the app; usage errors as click shows them, errors raised outside a command (option
    parsing) as one line (exit 2) — the commands report their own errors (:func:`_user_errors`).  Freed memory is
    kept for reuse (:func:`chainlab.memory.keep_freed_memory`: the batched passes are up to 2× faster)."""
    keep_freed_memory()
    try:
        rc = app(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (ChainlabError, OSError) as exc:
        if STATE["debug"]:
            raise
        msg = str(exc).strip()
        print(f"chainlab: error: {msg.splitlines()[0] if msg else type(exc).__name__}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
