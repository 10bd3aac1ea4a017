"""`fdpkit` command line: one verb per pipeline step; each verb's work lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from fdpkit import __version__
from fdpkit.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EnvironmentFault, FdpkitError
from fdpkit.data.preprocess.flow import METHODS as FLOW_METHODS
from fdpkit.data.preprocess.keys import ALIGN_MODES
from fdpkit.data.preprocess.sampling import METHODS as SAMPLING_METHODS
from fdpkit.loso.compare import add_arguments as add_compare_arguments
from fdpkit.loso.folds import HOLDOUTS
from fdpkit.paths import repo_folder
from fdpkit.registry import DATASETS, MODELS, PRESETS, choices
from fdpkit.train.config import SELECTIONS

# verb -> (module holding `run_cli(args) -> int`, one-line help)
VERBS = {
    "synth": ("fdpkit.synthme.corpus", "generate SynthME, the synthetic micro-expression corpus"),
    "manifest": ("fdpkit.data.adapters", "read a corpus as distributed into a validated manifest"),
    "preprocess": ("fdpkit.data.preprocess.cache", "align faces, sample frames, cache clips and dynamic images"),
    "loso": ("fdpkit.loso.run", "train and evaluate leave-one-subject-out"),
    "compare": ("fdpkit.loso.compare", "paired comparison of LOSO runs on the same folds (differences, intervals, p)"),
    "report": ("fdpkit.nb.report", "run the notebooks with papermill and write an HTML report"),
    "bench": ("fdpkit_bench", "measure speed and memory"),
    "model-info": ("fdpkit.model.info", "parameters per module and FLOPs per clip"),
}


def _add_synth(p):
    p.add_argument("--out", required=True, help="folder to write the corpus into")
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--clips-per-subject", type=int, default=None, help="default: the SynthME default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intensity", type=float, default=1.0, help="scale of the expression motion")
    p.add_argument("--force", action="store_true", help="overwrite an existing corpus")


def _add_manifest(p):
    # Repeat --dataset/--root (and --annotations) to build a composite across corpora.
    p.add_argument("--dataset", required=True, choices=DATASETS, action="append")
    p.add_argument("--root", required=True, action="append", help="the corpus folder as distributed")
    p.add_argument("--annotations", action="append", default=None,
                   help="annotation spreadsheet (default: found under root)")
    p.add_argument("--protocol", default=None, help="class map: a name under data_manifests/protocols/ "
                   "or a path to a JSON file (default: the dataset's default; composite_3class for several "
                   "datasets)")
    p.add_argument("--lenient", action="store_true", help="skip bad rows into <out>.skipped.csv")
    p.add_argument("--sheet", action="append", default=None, metavar="NAME",
                   help="worksheet to read when the workbook has several annotation sheets "
                        "(one per --dataset for a composite)")
    p.add_argument("--out", required=True, help="manifest CSV to write")


def _add_preprocess(p):
    p.add_argument("--manifest", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--align", choices=ALIGN_MODES, default="once")
    p.add_argument("--sampling", choices=SAMPLING_METHODS, default="onset-offset")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lenient", action="store_true")
    p.add_argument("--flow", choices=FLOW_METHODS, default=None,
                   help="also cache each clip's onset->apex optical flow + optical strain (28x28) with this "
                        "method (tvl1: what STSTNet / OFF-ApexNet used; needs opencv-contrib)")


def _add_loso(p):
    p.add_argument("--manifest", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--preset", default="tiny", choices=PRESETS, help=choices(PRESETS))
    p.add_argument("--model", default="fdp", choices=MODELS, help=choices(MODELS))
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--selection", choices=SELECTIONS, default="fixed_steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", choices=HOLDOUTS, default="subject",
                   help="subject: leave-one-subject-out; dataset: cross-dataset (train on the other corpora, "
                        "test on the held-out one); --folds then names datasets")
    p.add_argument("--folds", default=None, help="comma-separated subject ids (default: all)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--jobs", type=int, default=0,
                   help="fold processes (local executor); 0: one per CPU core, at most 4 (1 with a GPU)")
    p.add_argument("--ray-address", default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="where folds train (default auto: CUDA when present, else CPU)")
    p.add_argument("--shuffle-labels", action="store_true", help="label-shuffled control run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--force", action="store_true", help="reuse a run folder made with another config")


def _add_report(p):
    p.add_argument("--dataset", default="synthme", choices=DATASETS)
    p.add_argument("--root", default=None)
    p.add_argument("--annotations", default=None)
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)


def _add_bench(p):
    p.add_argument("--only", default=None, help="comma-separated benchmark names")
    p.add_argument("--preset", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--json", default=None, help="write the records to this file")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller cases")


def _add_model_info(p):
    p.add_argument("--preset", default="tiny", choices=PRESETS, help=choices(PRESETS))
    p.add_argument("--num-classes", type=int, default=5, help="classes of the MER head (>= 2)")


ARGUMENTS = {
    "synth": _add_synth, "manifest": _add_manifest, "preprocess": _add_preprocess, "loso": _add_loso,
    "compare": add_compare_arguments, "report": _add_report, "bench": _add_bench, "model-info": _add_model_info,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fdpkit", description="FDP micro-expression recognition kit")
    parser.add_argument("--version", action="version", version=f"fdpkit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb, (_, help_text) in VERBS.items():
        ARGUMENTS[verb](verbs.add_parser(verb, help=help_text, description=help_text))
    return parser


def _verb_module(name: str):
    """The module of a verb. The benchmark harness is not part of the installed package: it lives in
    the checkout's benchmarks/ folder (`fdpkit bench` from a checkout, as `make` installs it)."""
    if name == "fdpkit_bench":
        try:
            folder = str(repo_folder("benchmarks"))
        except FileNotFoundError as error:
            raise EnvironmentFault(f"{error}; the benchmarks are run from a source checkout") from None
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """Run one verb; a user error or environment fault ends in one line on stderr and the exit code
    of `fdpkit.errors` (never a traceback; a traceback means a bug)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    module_name, _ = VERBS[args.verb]
    try:
        return int(_verb_module(module_name).run_cli(args) or 0)
    except FdpkitError as error:
        print(f"fdpkit {args.verb}: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # disk full, read-only folder, ...: the message names the file
        print(f"fdpkit {args.verb}: {error}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        print(f"fdpkit {args.verb}: interrupted; re-running the same command resumes", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
