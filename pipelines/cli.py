"""`python -m pipelines generate|bench|evaluate|<a module's command line>` (DESIGN.md contracts 3 and 5).

generate: validates through `pipelines.request` (the same layer the app uses), streams one progress line per step
to stderr, then writes the mp4 and the JSON report atomically. Exit codes: 0 success, 2 bad input (one line on
stderr naming the input, no output files), 130 interrupted, 1 internal error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

EXIT_BAD_INPUT = 2

#: Subcommands that run another module's command line as it is (its own flags and `--help`):
#: `python -m pipelines NAME ARGS...` is `python -m MODULE ARGS...`.
PASS_THROUGH = {
    "train-micro": ("pipelines.training.micro_stages", "train the micro models into assets/micro/"),
    "train": ("pipelines.training.__main__", "train HARIVO's video parts on a frozen image model"),
    "ablation": ("pipelines.training.ablation", "HARIVO's ablation in miniature on the micro world"),
    "normality": ("pipelines.training.normality", "HARIVO's Table A1: is correlated video noise Gaussian?"),
    "personalise": ("pipelines.training.personalise", "a personalised (LoRA) image model under the micro model's "
                                                      "temporal layers"),
    "ship": ("pipelines.training.ship", "ship a training run's video parts as a preset folder"),
    "evaluate-micro-model": ("pipelines.evaluation.micro_model", "the unguided micro model's accuracy on seen and "
                                                                 "held-out prompts"),
    "judge": ("pipelines.micro.judge", "the micro world's stand-in LVLM judge, served over HTTP"),
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`error: <input>: <message>`) and exit 2."""

    def error(self, message):  # noqa: D401 - argparse API
        message = message.replace("argument ", "").replace("\n", " ")
        self.exit(EXIT_BAD_INPUT, f"error: {message}\n")


def _fail(field: str, message: str) -> int:
    print(f"error: {field}: {message}".replace("\n", " "), file=sys.stderr)
    return EXIT_BAD_INPUT


_FLAG_OF = {
    "prompt": "--prompt", "negative_prompt": "--negative-prompt", "style_image": "--style-image", "audio": "--audio",
    "first_frame": "--first-frame", "last_frame": "--last-frame", "frames": "--frames", "size": "--size",
    "steps": "--steps", "cfg": "--cfg", "mg_scale": "--mg-scale", "seed": "--seed", "method": "--method",
    "task": "--task", "interpolation_mode": "--interpolation-mode", "params": "--param",
    "t2v_reward": "--reward", "reward_prompt": "--reward-prompt", "paper": "--paper",
}


def _flag(field: str) -> str:
    if field.startswith("param "):
        return f"--param {field[6:]}"
    return _FLAG_OF.get(field, field)


def build_parser() -> argparse.ArgumentParser:
    from .guidance import METHODS
    from .presets import presets_help, task_default_method
    from .task_options import TASKS

    p = _OneLineParser(prog="python -m pipelines", description="Guided Video Studio command line")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    g = sub.add_parser("generate", help="generate one guided video (mp4 + JSON report)")
    g.add_argument("--preset", default="auto", help=presets_help("auto"))
    g.add_argument("--device", default=None, help="torch device (default: the preset's choice)")
    g.add_argument("--task", required=True, choices=list(TASKS))
    g.add_argument("--prompt", required=True)
    from .request import CONSTANT_DEFAULTS as D  # the one table of defaults (pipelines.request.fields)

    g.add_argument("--negative-prompt", default=D["negative_prompt"])
    g.add_argument("--style-image")
    g.add_argument("--audio")
    g.add_argument("--first-frame")
    g.add_argument("--last-frame")
    g.add_argument("--interpolation-mode", default=D["interpolation_mode"])
    g.add_argument("--reward", default=D["t2v_reward"], help="t2v reward: clip | lvlm | 'clip+lvlm weighted|normalized|borda' "
                   "(the LVLM judge is configured by GVS_LVLM_URL/GVS_LVLM_MODEL/GVS_LVLM_API_KEY)")
    g.add_argument("--reward-prompt", default=None,
                   help="t2v: the text the reward scores, when it should differ from --prompt (what the video model "
                        "is conditioned on); with --prompt '' the model samples unconditioned and only guidance "
                        "draws this text")
    g.add_argument("--method", default=None, choices=list(METHODS),
                   help="guidance method (default: the task's default, the one the app's tab opens on: "
                        + ", ".join(f"{t} {task_default_method(t)[0]}" for t in TASKS) + ")")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="method parameter (repeatable), e.g. --param scale=2.0")
    g.add_argument("--paper", action="store_true",
                   help="run the method as its paper states it: unbounded step (trust 0) and the paper's λ/ρ/update "
                        "form/schedule instead of the preset's defaults (docs/methods.md, \"Paper settings\"); "
                        "--param values still win")
    g.add_argument("--mg-scale", default=D["mg_scale"], help="HARIVO mitigating gradient α (0 = off, 40 = HARIVO default)")
    g.add_argument("--mg-normalized", action="store_true",
                   help="read --mg-scale as HARIVO's α (its effect at 24 frames × 32² latents) at this video's size")
    g.add_argument("--cfg-schedule", action="store_true", help="HARIVO CFG schedule (high CFG early)")
    g.add_argument("--steps", default=None)
    g.add_argument("--cfg", default=None)
    g.add_argument("--frames", default=None)
    g.add_argument("--size", default=None)
    g.add_argument("--seed", default=D["seed"], help="integer, or -1 for a random seed")
    g.add_argument("--eta", default=D["eta"],
                   help=f"DDIM η, the same for every method, `none` included (default {D['eta']:g})")
    from .model_options import add_model_arguments

    add_model_arguments(g)
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--report", required=True, help="output JSON report")
    g.add_argument("--quiet", action="store_true", help="no per-step progress on stderr")

    b = sub.add_parser("bench", help="seconds and peak memory per (method, size); one JSON object per line")
    b.add_argument("--preset", default="micro", help="micro | micro-harivo | tiny | sd15-random (SD1.5-sized random "
                   "weights) | sd15-random-lean (the same, set up like animatediff-lean)")
    b.add_argument("--device", default=None)
    b.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    b.add_argument("--methods", default=None, help="comma-separated method names (default: none,titan)")
    b.add_argument("--sizes", default=None, help="comma-separated FRAMESxSIDE, e.g. 8x32,16x512 (default: 8x32)")
    b.add_argument("--steps", type=int, default=None)
    b.add_argument("--repeats", type=int, default=None)
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--matrix", action="store_true",
                   help="methods × --frames × --sides × --dtypes, with the diffusers AnimateDiffPipeline and "
                        "none+previews reference rows (default methods: none,titan,freedom,free2guide)")
    b.add_argument("--frames", default="8,16,24,32", help="matrix frame counts (default 8,16,24,32)")
    b.add_argument("--sides", default="256,512", help="matrix square sides in px (default 256,512)")
    b.add_argument("--dtypes", default=None, help="matrix dtypes, comma-separated (default: float32)")
    b.add_argument("--no-references", action="store_true", help="matrix without the reference rows")
    b.add_argument("--out", default=None, help="folder for bench.jsonl, bench.md and the plots")
    b.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method parameter (repeatable), e.g. --param titan.objective_subset=true")
    b.add_argument("--task", default="t2v", help="whose real reward the guided rows use: t2v | style | audio | "
                   "interpolate, or target (a cheap stand-in reward without models); default t2v")
    b.add_argument("--unet-checkpointing", default="auto", choices=["auto", "on", "off"],
                   help="checkpoint the UNet in the backprop methods' backward (auto: frames >= 256^2)")

    from .evaluation.cli import build_parser as evaluate_parser

    evaluate_parser(sub.add_parser("evaluate", help="guidance suites × methods × seeds: exact on the micro preset, "
                                                   "real-weight metrics on the others"))

    for name, (module, what) in PASS_THROUGH.items():
        t = sub.add_parser(name, help=f"{what} (python -m {module.removesuffix('.__main__')})", add_help=False)
        t.add_argument("rest", nargs=argparse.REMAINDER)
    return p


_MODEL_FLAG = {"video_parts": "--video-parts", "lora": "--lora"}


def _int_or_none(v):
    return None if v is None else v


def cmd_generate(a) -> int:
    from .presets import task_default_method
    from .request import GenerationRequest, RequestError, finalize, parse_param_strings, run, summary_text, validate

    if a.method is None:  # the task's default, as the app's tab opens on it (one table: presets.TASK_DEFAULT_METHODS)
        a.method = task_default_method(a.task)[0]
        if not a.quiet:
            print(f"method: {a.method} (the {a.task} task's default; --method to choose another)", file=sys.stderr)

    out, report = Path(a.out), Path(a.report)
    if out.suffix.lower() != ".mp4":
        return _fail("--out", f"must end with .mp4, got {a.out!r}")
    if out.resolve() == report.resolve():
        return _fail("--report", "must differ from --out")
    for flag, path in (("--out", out), ("--report", report)):
        parent = path.resolve().parent
        if parent.exists() and not parent.is_dir():
            return _fail(flag, f"{parent} is not a directory")
    # cheap checks before the (slow) model load
    for flag, path in (("--style-image", a.style_image), ("--audio", a.audio), ("--first-frame", a.first_frame),
                       ("--last-frame", a.last_frame)):
        if path is not None and not Path(path).is_file():
            return _fail(flag, f"file not found: {path}")
    try:
        params = parse_param_strings(a.param)
        from .request import check_prompt

        check_prompt(a.prompt, "prompt", required=not (a.reward_prompt or "").strip())
        from .request import resolve_params

        resolve_params(a.method, params, paper=a.paper)
    except RequestError as e:
        return _fail(_flag(e.field), e.message)
    from .model_options import ModelOptionError, model_options_of, with_model

    try:
        options = model_options_of(a)
    except ModelOptionError as e:
        return _fail(_MODEL_FLAG[e.field], e.message)

    seed = a.seed
    req = GenerationRequest(
        task=a.task, prompt=a.prompt, negative_prompt=a.negative_prompt, method=a.method, params=params,
        mg_scale=a.mg_scale, mg_normalized=a.mg_normalized, cfg_schedule=a.cfg_schedule, seed=seed, steps=a.steps, cfg=a.cfg, frames=a.frames,
        size=a.size, eta=a.eta, style_image=a.style_image, audio=a.audio, first_frame=a.first_frame, last_frame=a.last_frame,
        interpolation_mode=a.interpolation_mode, t2v_reward=a.reward, reward_prompt=a.reward_prompt, paper=a.paper,
    )
    from .presets import load_preset

    try:
        preset = load_preset(a.preset, device=a.device)
    except ValueError as e:
        return _fail("--preset", str(e))
    try:
        preset = with_model(preset, options)
    except ModelOptionError as e:
        return _fail(_MODEL_FLAG[e.field], e.message)
    if not a.quiet:
        print(f"preset: {preset.name} — {preset.reason}", file=sys.stderr)
    try:
        prepared = validate(req, preset)
    except RequestError as e:
        return _fail(_flag(e.field), e.message)
    for n in prepared.notices:
        print(f"notice: {n}", file=sys.stderr)
    gen = run(prepared, preset)
    for ev in gen:
        if not a.quiet and not ev.final:
            r = "" if ev.reward is None else f" reward {ev.reward:.4f}"
            print(f"step {ev.index + 1}/{ev.total}{r} ({ev.seconds:.1f} s)", file=sys.stderr, flush=True)
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    report.resolve().parent.mkdir(parents=True, exist_ok=True)
    rep = finalize(gen, out, report)
    if not a.quiet:
        print(summary_text(rep), file=sys.stderr)
    print(json.dumps({"out": str(out), "report": str(report), "final_reward": rep["final_reward"],
                      "seconds": rep["seconds"]}))
    return 0


def bench_params(items: Sequence[str]) -> dict:
    """`--param METHOD.NAME=VALUE` (repeated) -> {method: {name: value}}, each value checked against its spec."""
    from .request import RequestError, parse_method_param_strings, resolve_params

    try:
        raw = parse_method_param_strings(items)
    except RequestError as e:
        raise ValueError(str(e)) from None
    out = {}
    for method, given in raw.items():
        try:
            full = resolve_params(method, given)
        except RequestError as e:
            raise ValueError(f"--param {method}.{e.field.removeprefix('param ')}: {e.message}") from None
        except ValueError as e:  # an unknown method
            raise ValueError(f"--param: {e}") from None
        out[method] = {n: full[n] for n in given}
    return out


def cmd_bench(a, argv: Sequence[str] = ()) -> int:
    from .bench import matrix_sizes, run_bench, run_matrix, write_report

    def split(v):
        return None if v is None else [x.strip() for x in v.split(",") if x.strip()]

    def ints(v, flag):
        try:
            return [int(x) for x in split(v)]
        except ValueError:
            raise ValueError(f"{flag} must be comma-separated whole numbers, got {v!r}") from None

    rows = []
    try:
        params = bench_params(a.param)
        if a.matrix:
            sizes = split(a.sizes) or matrix_sizes(ints(a.frames, "--frames"), ints(a.sides, "--sides"))
            dtypes = split(a.dtypes) or [a.dtype or "float32"]
            gen = run_matrix(a.preset, split(a.methods) or ["none", "titan", "freedom", "free2guide"], sizes, dtypes,
                             a.steps or 25, device=a.device, seed=a.seed or 0, repeats=a.repeats or 1,
                             references=not a.no_references, params=params, task=a.task,
                             unet_checkpointing=a.unet_checkpointing)
        else:
            kwargs = {"preset": a.preset, "methods": split(a.methods), "sizes": split(a.sizes), "steps": a.steps,
                      "device": a.device, "dtype": a.dtype, "repeats": a.repeats, "seed": a.seed,
                      "params": params or None, "task": a.task, "unet_checkpointing": a.unet_checkpointing}
            gen = run_bench(**{k: v for k, v in kwargs.items() if v is not None})
        for row in gen:
            rows.append(row)
            print(json.dumps(row), flush=True)
    except ValueError as e:
        return _fail("bench", str(e))
    if a.out:
        paths = write_report(rows, a.out, command="python -m pipelines bench " + " ".join(argv))
        print(f"wrote {paths['jsonl']}, {paths['markdown']} and {len(paths['plots'])} plot(s)", file=sys.stderr)
    return 0


def cmd_pass_through(name: str, rest: Sequence[str]) -> int:
    """A `PASS_THROUGH` subcommand: the module's `main` with the rest of the command line."""
    import importlib

    module = PASS_THROUGH[name][0]
    try:
        main_of = importlib.import_module(module).main
    except ImportError as e:
        print(f"error: {name}: {module} is not available ({e})", file=sys.stderr)
        return 1
    rc = main_of(list(rest))
    return int(rc or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv[:1] and argv[0] in PASS_THROUGH:
        return cmd_pass_through(argv[0], argv[1:])
    a = build_parser().parse_args(argv)
    try:
        if a.command == "generate":
            return cmd_generate(a)
        if a.command == "bench":
            return cmd_bench(a, argv[1:])
        if a.command == "evaluate":
            from .evaluation.cli import main as evaluate_main

            return evaluate_main(args=a)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
