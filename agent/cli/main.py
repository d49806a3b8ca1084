"""`ftagent` command line. Heavy libraries are imported inside commands, so `--help`
starts fast and never loads torch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.chat import ask_command, chat_command
from ftagent.agent.cli.common import EXIT_FAILED, EXIT_REJECTED, EXIT_WAITING, fail
from ftagent.agent.cli.config import app as config_app
from ftagent.agent.cli.data import app as data_app
from ftagent.agent.cli.deploy import export_command, merge_command
from ftagent.agent.cli.eval import eval_command
from ftagent.agent.cli.launch import app as launch_app
from ftagent.agent.cli.serve import serve_command
from ftagent.agent.cli.teacher import ConfigOpt, TeacherOpt, UrlOpt

app = typer.Typer(
    name="ftagent",
    help="Plan, prepare data, train, evaluate and serve fine-tuned language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO_GOAL = "customer support assistant that routes banking questions to the right intent"
GATE_HELP = (
    "comma-separated gates to approve (strategy, dataset, training, evaluation, safety, "
    "deployment), 'all' (every gate whose automatic check passed) or 'none'"
)

ApproveOpt = Annotated[str, typer.Option("--approve", help=GATE_HELP)]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="a policy file: per gate, approve when its conditions on the evidence "
    "hold (e.g. evaluation: {when: [accuracy >= 0.85]}); otherwise stop at that gate")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print events as JSON lines")]
ProviderUrlOpt = Annotated[str | None, typer.Option(
    "--provider-url", help="fine-tune --model at this OpenAI-compatible fine-tuning API "
    "(…/v1; e.g. another ftagent serve --fine-tuning); an OpenAI model name such as "
    "gpt-4o-mini-2024-07-18 alone means OpenAI's API")]
ProviderKeyOpt = Annotated[str | None, typer.Option(
    "--provider-key-env", help="environment variable holding the provider's API key "
    "(default OPENAI_API_KEY; the key is never written anywhere)")]



def _policy(
    approve: str | None,
    reject: str | None = None,
    reason: str = "",
    edit: list[str] | None = None,
    edit_gate: str | None = None,
    policy_file: Path | None = None,
):
    from ftagent.agent.service.session import ApprovalPolicy

    if policy_file is not None:
        from ftagent.agent.service.policy import PolicyError, load_policy

        if (approve or "none") != "none" or reject or edit:
            raise fail("--policy decides the gates: leave out --approve, --reject and --edit")
        try:
            return load_policy(policy_file)
        except PolicyError as exc:
            raise fail(str(exc)) from None

    edits = {}
    if edit:
        changes = {}
        for item in edit:
            key, sep, raw = item.partition("=")
            if not sep:
                raise fail(f"--edit expects KEY=VALUE, got '{item}'")
            import yaml

            changes[key.strip()] = yaml.safe_load(raw)
        if not edit_gate:
            raise fail("--edit needs --gate to say which waiting gate it answers")
        edits[edit_gate] = changes
    from ftagent.agent.graph.gates import DecisionError

    try:
        return ApprovalPolicy.from_flags(approve, reject, reason, edits)
    except DecisionError as exc:
        raise fail(str(exc)) from None


def _report(outcome, as_json: bool) -> None:
    from ftagent.agent.cli.console import comparison_table, verdict_table
    from rich.console import Console

    if as_json:
        return
    console = Console()
    ev = outcome.values.get("eval_report")
    rows = (outcome.values.get("verdict") or {}).get("rows")
    if ev and rows:
        console.print(verdict_table(rows, ev["n_test"]))
    elif ev:
        console.print(comparison_table(ev))
    commands = "\n".join(f"  {c}" for c in outcome.next_commands())
    if outcome.status == "waiting":
        if outcome.unmet:
            console.print(f"[yellow]Policy not met[/] — {outcome.unmet}")
        console.print(f"[yellow]Waiting at gate '{outcome.gate}'.[/] Continue with:\n{commands}")
    elif outcome.status == "failed":
        console.print(f"Fix the cause, then:{commands}")
    console.print(f"Run folder: {outcome.run_dir}")


def _exit_code(status: str) -> int:
    return {"done": 0, "waiting": EXIT_WAITING, "rejected": EXIT_REJECTED}.get(status, EXIT_FAILED)


def start_run(
    goal: str,
    data: Path,
    model: str | None,
    approve: str | None,
    run_dir: Path | None,
    max_attempts: int,
    as_json: bool,
    policy_file: Path | None = None,
    constraints: dict | None = None,
    teacher: dict | None = None,
    provider: dict | None = None,
) -> int:
    """Check the inputs, make the run folder, and drive the workflow."""
    from ftagent.agent.cli.console import EventPrinter
    from ftagent.agent.service.new_run import InputError, create_workflow_run
    from ftagent.agent.service.runs import new_run_id
    from ftagent.agent.service.session import drive, initial_state
    from ftagent.tools.paths import default_runs_dir

    policy = _policy(approve, policy_file=policy_file)
    try:  # bad input fails here, before any run folder exists
        run_id = new_run_id()
        target = create_workflow_run(goal, data, model, run_dir or default_runs_dir() / run_id,
                                     max_attempts, run_id=run_id, constraints=constraints,
                                     teacher=teacher, provider=provider)
    except InputError as exc:
        raise fail(str(exc)) from None
    outcome = drive(target, policy, initial_state(target), EventPrinter(as_json))
    _report(outcome, as_json)
    return _exit_code(outcome.status)


@app.command()
def run(
    goal: Annotated[str, typer.Option(help="what the tuned model should do")],
    data: Annotated[
        Path, typer.Option(help="JSONL training data (chat, Alpaca or prompt/completion)")
    ],
    model: Annotated[
        str | None, typer.Option(help="base model: name, local folder or cached hub id")
    ] = None,
    approve: ApproveOpt = "none",
    policy: PolicyOpt = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="run folder (default: runs/<run-id>)")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="train/eval attempts before giving up")
    ] = 2,
    safety_mix: Annotated[
        float | None, typer.Option(
            min=0.0, max=1.0, help="safety rows mixed into chat/generation training, as a share "
            "of the training rows (default 0.6)")
    ] = None,
    no_safety_mix: Annotated[
        bool, typer.Option("--no-safety-mix", help="add no safety rows to the training data")
    ] = False,
    teacher: TeacherOpt = None,
    teacher_url: UrlOpt = None,
    teacher_config: ConfigOpt = None,
    provider_url: ProviderUrlOpt = None,
    provider_key_env: ProviderKeyOpt = None,
    provider_probes: Annotated[int | None, typer.Option(
        "--provider-probes", min=0, help="safety probe prompts of each kind asked of base and "
        "tuned at the provider (each a paid request; 0: none; default 50)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole workflow headless; unapproved gates stop the run cleanly. With a
    teacher and prompt-only data, the teacher answers the prompts (distillation). With a
    provider's model (--model gpt-4o-mini-2024-07-18, or --provider-url URL --model NAME)
    the job runs at the provider and the tuned model is evaluated through its chat API."""
    from ftagent.agent.cli.teacher import teacher_settings

    provider = {"base_url": provider_url, "api_key_env": provider_key_env,
                "probes": provider_probes}
    mix = 0.0 if no_safety_mix else safety_mix
    constraints = {"safety_mix": mix} if mix is not None else {}
    settings = None
    if teacher or teacher_config:
        settings = teacher_settings(teacher, teacher_url, teacher_config)
        constraints["teacher"] = settings.name
    raise typer.Exit(start_run(goal, data, model, approve, run_dir, max_attempts, as_json,
                               policy, constraints or None,
                               settings.model_dump() if settings else None, provider))


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="run id (or run folder) to continue")],
    approve: ApproveOpt = "none",
    reject: Annotated[str | None, typer.Option(help="gate to reject")] = None,
    reason: Annotated[str, typer.Option(help="why it is rejected")] = "",
    edit: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE config change, repeatable")
    ] = None,
    gate: Annotated[str | None, typer.Option(help="the gate --edit answers")] = None,
    policy_file: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a stopped, waiting or killed run from its last checkpoint."""
    from ftagent.agent.cli.console import EventPrinter
    from ftagent.agent.service.runs import RunError, check_resumable, find_run_or_folder
    from ftagent.agent.service.session import drive

    if reject and not reason:
        raise fail("--reject needs --reason")
    policy = _policy(approve, reject, reason, edit, gate, policy_file)
    try:
        folder = find_run_or_folder(run_id)
        check_resumable(folder, run_id, tuple(filter(None, (gate if edit else None, reject))))
    except RunError as exc:
        raise fail(str(exc)) from None
    outcome = drive(folder, policy, None, EventPrinter(as_json))
    _report(outcome, as_json)
    raise typer.Exit(_exit_code(outcome.status))


@app.command()
def runs(as_json: JsonOpt = False) -> None:
    """List runs with their status."""
    import json

    from ftagent.agent.service.runs import list_runs
    from rich.console import Console
    from rich.table import Table

    rows = list_runs()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="ftagent runs")
    table.add_column("run id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    table.add_column("goal", overflow="fold")
    table.add_column("folder", overflow="fold")
    for r in rows:
        table.add_row(r["run_id"], r["status"], r["gate"] or "", r["goal"][:60], r["run_dir"])
    Console().print(table)


@app.command()
def plan(
    goal: Annotated[str, typer.Option(help="what the tuned model should do")],
    data: Annotated[Path, typer.Option(help="training data (any format `ftagent data` reads)")],
    model: Annotated[
        str | None,
        typer.Option(help="fix the base model (name, local folder or cached hub id); "
                     "default: the planner picks from its registry"),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="fix the method: lora, qlora, full, dpo, distillation")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="most the training may cost, USD")] = None,
    rate: Annotated[float | None, typer.Option(help="price of one GPU-hour, USD")] = None,
    deadline: Annotated[float | None, typer.Option(help="training must end within, hours")] = None,
    latency: Annotated[float | None, typer.Option(help="p50 answer latency target, ms")] = None,
    max_params: Annotated[float | None, typer.Option(help="largest base model, billions")] = None,
    permissive: Annotated[
        bool, typer.Option("--permissive", help="only Apache-2.0/MIT-style licences")
    ] = False,
    teacher: Annotated[str | None, typer.Option(help="teacher model to distil from")] = None,
    no_prompting_first: Annotated[
        bool, typer.Option("--no-prompting-first", help="skip the few-shot prompting advice")
    ] = False,
    local_only: Annotated[
        bool, typer.Option("--local-only", help="only models already on this machine")
    ] = False,
    hardware: Annotated[
        str | None, typer.Option(help="plan for GPUs you do not have at hand: GPU:COUNT per "
                                 "node (H100-80GB:8, A100-40GB:4, L4); default: this machine")
    ] = None,
    nodes: Annotated[
        int, typer.Option(min=1, help="with --hardware: nodes of COUNT GPUs each")
    ] = 1,
    provider_url: ProviderUrlOpt = None,
    provider_key_env: ProviderKeyOpt = None,
    out: Annotated[Path | None, typer.Option(help="folder for plan.md and plan.json")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan a fine-tuning run (task, method, model, memory, cost, risks) without starting it.
    --hardware plans for other GPUs (known: `ftagent plan --hardware list`). A provider's
    model (--model gpt-4o-mini-2024-07-18, or --provider-url URL --model NAME) gets the
    provider job's plan and cost estimate; no key or network is needed for it."""
    import json

    from ftagent.agent.service.new_run import InputError
    from ftagent.agent.service.planning import make_plan
    from ftagent.tools.atomic import write_json, write_text
    from ftagent.tools.plan.types import METHODS, Constraints
    from ftagent.tools.quiet import quiet_libraries
    from pydantic import ValidationError
    from rich.console import Console
    from rich.markdown import Markdown

    quiet_libraries()
    if method and method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    described = None
    if hardware == "list":
        from ftagent.tools.gpus import SPECS

        for s in SPECS:
            typer.echo(f"{s.key:10} {s.memory_gb:5g} GB  {s.tflops:6g} TFLOP/s bf16  "
                       f"${s.usd_per_hour:g}/GPU-hour")
        return
    if hardware:
        from ftagent.tools.gpus import described as described_hardware

        try:
            described = described_hardware(hardware, nodes)
        except ValueError as exc:
            raise fail(f"--hardware: {exc}") from None
    elif nodes > 1:
        raise fail("--nodes needs --hardware (the GPUs of each node)")
    try:
        constraints = Constraints(
            budget_usd=budget, rate_usd_per_hour=rate, deadline_hours=deadline,
            latency_ms=latency, max_params_b=max_params, teacher=teacher, method=method,
            licence="permissive" if permissive else "any",
            prompting_first=False if no_prompting_first else None,
        )
        planned = make_plan(goal, data, model, constraints,
                            {"base_url": provider_url, "api_key_env": provider_key_env},
                            require_local=local_only, hardware=described)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"bad constraint: {first['loc'][0]}: {first['msg']}") from None
    except InputError as exc:
        raise fail(str(exc)) from None
    if out:
        write_text(out / "plan.md", planned.markdown)
        write_json(out / "plan.json", planned.plan)
    if as_json:
        typer.echo(json.dumps(planned.plan, indent=2))
    else:
        Console().print(Markdown(planned.markdown))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="training config YAML (see `ftagent config`)")],
    launch: Annotated[
        str | None,
        typer.Option(help="none: one process; accelerate: `accelerate launch` (implied by "
                     "--num-processes above 1)"),
    ] = None,
    num_processes: Annotated[
        int | None,
        typer.Option(min=1, help="training processes: one per GPU, or DDP over gloo on CPU "
                     "(default 1; with --launch accelerate, every GPU)"),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="several GPUs: auto (full: fsdp, adapters: ddp), ddp, fsdp or "
                          "deepspeed (needs `pip install deepspeed`)")
    ] = "auto",
    nodes: Annotated[
        int, typer.Option(min=1, help="machines training together; run this command on each "
                          "one, with its --node-rank, on an output_dir they share")
    ] = 1,
    node_rank: Annotated[
        int, typer.Option(min=0, help="this machine's rank among --nodes (0: the main one, "
                          "which writes metrics, checkpoints and the result)")
    ] = 0,
    main_address: Annotated[
        str | None, typer.Option(help="HOST:PORT of node 0, where the nodes meet (torchrun's "
                                 "static rendezvous); needed with --nodes above 1")
    ] = None,
    print_command: Annotated[
        bool, typer.Option("--print-command", help="print the launch command (and write the "
                           "accelerate config for several GPUs), then exit without training")
    ] = False,
) -> None:
    """Train from a config: pre-flight check, then the recipe in its own process (a killed
    command leaves it running; run it again to follow it or resume from its checkpoint).
    Several machines: the same command on each, with --nodes, --node-rank, --main-address;
    --num-processes then counts one machine's processes."""
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.hardware import probe
    from ftagent.tools.train.jobs import JOB_FILE, TrainingFailed, node_file, run_training_job
    from ftagent.tools.train.preflight import format_report, preflight
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        cfg = load_config(config)
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    out = Path(cfg.output_dir)
    if (out / "result.json").exists() and not print_command:
        raise fail(f"{out} holds a finished run; finished runs are never overwritten: "
                    "choose a new output_dir")
    machines = (nodes, node_rank, main_address)
    launch, n, accel_config = _launch_plan(cfg, config, launch, num_processes, strategy,
                                           print_command, machines)
    if print_command:
        raise typer.Exit(0)
    if not (out / node_file(JOB_FILE, node_rank)).exists():  # a first start, not a resume
        report = preflight(cfg, probe(out.parent if out.parent.exists() else Path(".")))
        if not report.ok:
            raise fail(f"pre-flight check failed:\n{format_report(report)}")
    columns = (TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} steps"), TextColumn("{task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=None, loss="")

        def show(row: dict) -> None:
            if row.get("max_steps"):
                progress.update(task, total=row["max_steps"])
            if "step" in row:
                progress.update(task, completed=row["step"])
            if "loss" in row:
                speed = f"  {row['tokens_per_s']:.0f} tok/s" if row.get("tokens_per_s") else ""
                progress.update(task, loss=f"loss {row['loss']:.4f}{speed}")
            if row.get("event") in ("anomaly", "warning", "recovered"):
                progress.console.print(f"[yellow]{row['message']}[/] {row.get('fix', '')}")

        try:
            result = run_training_job(config, out, on_metrics=show, num_processes=n,
                                      launch=launch, accelerate_config=accel_config,
                                      num_machines=nodes, machine_rank=node_rank,
                                      main_address=main_address)
        except TrainingFailed as exc:
            raise fail(str(exc), EXIT_FAILED) from None
    if "global_step" not in result:  # a machine that does not see node 0's result.json
        typer.echo(f"done: node {node_rank} of {nodes}; node 0 wrote the result into {out}")
        return
    typer.echo(f"done: {result['global_step']} steps, train loss {result['train_loss']:.4f}; "
               f"{result['output']}")


def _launch_plan(cfg, config: Path, launch: str | None, num_processes: int | None,
                 strategy: str, print_command: bool,
                 machines: tuple[int, int, str | None] = (1, 0, None),
                 ) -> tuple[str, int, Path | None]:
    """How `train` starts the recipe: (launch, processes on this machine, accelerate config
    file or None); with --print-command, print the command it would run. `machines` is
    (nodes, node rank, main address)."""
    import shlex

    from ftagent.tools.train import launch as tl
    from ftagent.tools.train.jobs import job_command

    nodes, node_rank, main_address = machines
    if launch not in (None, "none", "accelerate"):
        raise fail(f"--launch must be none or accelerate, got '{launch}'")
    if strategy not in ("auto", *tl.STRATEGIES):
        raise fail(f"--strategy must be auto or one of {', '.join(tl.STRATEGIES)}, "
                    f"got '{strategy}'")
    try:
        tl.check_machines(nodes, node_rank, main_address)
    except ValueError as exc:
        raise fail(f"{exc} (--nodes, --node-rank, --main-address)") from None
    several = (num_processes or 1) > 1 or nodes > 1
    if launch == "none" and several:
        raise fail("--num-processes or --nodes above 1 need --launch accelerate")
    launch = launch or ("accelerate" if several else "none")
    accel_config, n = None, num_processes or 1
    if launch == "accelerate":
        gpus = tl.cuda_devices()
        n = num_processes or max(1, gpus)
        if gpus and n > gpus:
            raise fail(f"--num-processes {n} but torch sees {gpus} GPU(s)")
        # Several GPUs: DDP, FSDP2 or ZeRO-3 from a config file; CPU processes need none.
        total = n * nodes
        accel_config = (tl.prepare_config(cfg, total, strategy, num_machines=nodes)
                        if gpus and total > 1 else None)
    missing_ds = accel_config and strategy == "deepspeed" and not tl.deepspeed_installed()
    if missing_ds and not print_command:
        raise fail(f"deepspeed is not installed: `pip install deepspeed`, or choose "
                    f"--strategy fsdp (config written to {accel_config})")
    if print_command:
        typer.echo(shlex.join(job_command(config, n, launch, accel_config, *machines)))
        if accel_config:
            typer.echo(f"accelerate config: {accel_config}")
        if missing_ds:
            typer.secho("note: deepspeed is not installed; `pip install deepspeed` first",
                        fg="yellow", err=True)
    return launch, n, accel_config


@app.command()
def demo(
    run_dir: Annotated[
        Path | None, typer.Option(help="run folder (default: runs/<run-id>)")
    ] = None,
    approve: Annotated[str, typer.Option(
        "--approve", help="gates to approve (default: all; 'none' stops at the first)")] = "all",
    as_json: JsonOpt = False,
) -> None:
    """The whole workflow on the bundled model and support-intent data, all gates approved."""
    from ftagent.tools.bundled import DEMO_DATA, bundled_path

    data = bundled_path(DEMO_DATA)
    started = time.time()
    code = start_run(DEMO_GOAL, data, None, approve, run_dir, 2, as_json)
    if not as_json:
        typer.echo(f"Demo wall time: {time.time() - started:.0f} s")
    raise typer.Exit(code)


def main() -> None:
    """The command line alone (`python -m ftagent.agent.cli`); the `ftagent` command
    itself is `ftagent.launcher.main`, which adds the terminal app."""
    app()


app.command("eval")(eval_command)
app.command("chat")(chat_command)
app.command("ask")(ask_command)
app.command("merge")(merge_command)
app.command("export")(export_command)
app.command("serve")(serve_command)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(launch_app, name="launch")


if __name__ == "__main__":
    main()
