"""The ftagent terminal app: a chat with slash commands that drives the same engine as
headless runs (`agent.session.drive`, injected), in a thread worker whose events arrive
as messages. Heavy libraries (torch, transformers, langgraph) load only in workers, so
the first screen paints before any of them is imported."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ftagent.tui.commands import COMMANDS, CommandError, ParsedCommand, help_markdown, parse
from ftagent.tui.messages import EngineEvent, RunCreated, RunEnded, RunsFound, TaskDone
from ftagent.tui.palette import FtagentCommands
from ftagent.tui.screens.main import MainScreen
from ftagent.tui.steps import StepTracker
from ftagent.tui.widgets.chat import ChatLog
from ftagent.tui.widgets.command_input import CommandInput
from ftagent.tui.widgets.sidebar import RunPanel, StepsPanel
from ftagent.tui.widgets.training import TrainingPanel
from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input

STEP_GATES = {"train": ("training",), "eval": ("evaluation", "safety"),
              "deploy": ("deployment",)}


class FtagentApp(App):
    """`runs_root`: where new runs go (default: $FTAGENT_RUNS_DIR or ./runs); `driver`:
    the workflow driver with drive()'s signature (default: agent.session.drive)."""

    CSS_PATH = "app.tcss"
    TITLE = "ftagent"
    SUB_TITLE = "fine-tuning assistant"
    COMMANDS = App.COMMANDS | {FtagentCommands}
    BINDINGS = [
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+r", "show_runs", "Runs"),
        Binding("ctrl+g", "show_gate", "Gate"),
        Binding("ctrl+o", "edit_config", "Config"),
        Binding("ctrl+t", "toggle_dark", "Theme"),
    ]

    def __init__(self, runs_root: Path | None = None, driver: Callable | None = None,
                 offer_resume: bool = True) -> None:
        super().__init__()
        if runs_root is None:
            from ftagent.tools.paths import default_runs_dir

            runs_root = default_runs_dir()
        self.runs_root = Path(runs_root)
        self.driver = driver
        self.offer_resume = offer_resume
        self.main = MainScreen()
        self.run_dir: Path | None = None
        self.tracker = StepTracker()
        self.request: dict | None = None  # the gate the run waits at
        self.values: dict = {}  # the workflow state the driver last returned
        self.busy = False  # the driver is running (one run at a time)
        self.deciding = False  # the driver resumes after a decision: no "resuming" line
        self.data_path: str | None = None
        self.model_name: str | None = None
        self.info: dict = {}

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.offer_resume:
            self._scan_runs()

    # ---- widgets -------------------------------------------------------------------

    @property
    def chat(self) -> ChatLog:
        return self.main.query_one(ChatLog)

    @property
    def training(self) -> TrainingPanel:
        return self.main.query_one(TrainingPanel)

    def say(self, markdown: str, role: str = "agent") -> None:
        self.chat.add(markdown, role)

    def error(self, line: str) -> None:
        self.chat.error(f"✗ {line}")

    def _show_info(self) -> None:
        self.main.query_one(StepsPanel).show(self.tracker)
        info = dict(self.info)
        if not self.run_dir:
            info.update(model=self.model_name, data=self.data_path)
        self.main.query_one(RunPanel).show(info)

    # ---- the input line ------------------------------------------------------------

    @on(Input.Submitted, "#command")
    def _submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        box = self.main.query_one(CommandInput)
        box.value = ""
        if not line:
            return
        box.remember(line)
        self.say(f"› {line}" if line.startswith("/") else line, role="user")
        if not line.startswith("/"):
            try:
                self._not_busy()
            except CommandError as exc:
                self.error(str(exc))
                return
            self.busy = True
            self._chat(line)
            return
        try:
            command = parse(line)
        except CommandError as exc:
            self.error(str(exc))
            return
        self.dispatch(command)

    def dispatch(self, command: ParsedCommand) -> None:
        handler = getattr(self, "cmd_" + command.name.replace(":", "_").replace("-", "_"))
        try:
            handler(**command.args)
        except CommandError as exc:
            self.error(f"{exc}. Usage: {COMMANDS[command.name].usage}")

    # ---- commands ------------------------------------------------------------------

    def cmd_workflow_fine_tuning(self, goal: str, data: str | None = None,
                                 model: str | None = None, max_attempts: str = "2") -> None:
        data = data or self.data_path
        if not data:
            raise CommandError("needs --data PATH (or set it first with /data PATH)")
        if not max_attempts.isdigit() or int(max_attempts) < 1:
            raise CommandError(f"--max-attempts must be a whole number from 1, got "
                               f"'{max_attempts}'")
        self._not_busy()
        self.data_path, self.model_name = data, model or self.model_name
        self.busy = True
        self.say(f"Checking `{data}` and the model, then planning…")
        self._start_run(goal, data, self.model_name, int(max_attempts))

    def cmd_workflow_dataset_engineering(self, path: str) -> None:
        self.say(f"Validating `{path}` (every check of `ftagent data validate`)…")
        self._side_task("validate", path)

    def cmd_workflow_model_evaluation(self, base: str, tuned: str, test: str) -> None:
        self.say(f"Scoring `{base}` against `{tuned}` on `{test}` (with the probes)…")
        self._side_task("evaluate", base, tuned, test)

    def cmd_plan(self) -> None:
        text = self._run_file("plan.md")
        self.say(text) if text else self.error("no plan yet: the planner has not run")

    def cmd_data(self, path: str | None = None) -> None:
        if path is None:
            text = self._run_file("data/report.md")
            self.say(text) if text else self.error(
                "the run has no data report yet; /data PATH sets the next run's data")
            return
        self.data_path = path
        self._show_info()
        self.say(f"Data for the next run: `{path}`. Checking it…")
        self._side_task("validate", path)

    def cmd_config(self) -> None:
        self.action_edit_config()

    def cmd_train(self) -> None:
        self._step("train")

    def cmd_eval(self) -> None:
        self._step("eval")

    def cmd_deploy(self) -> None:
        self._step("deploy")

    def cmd_status(self) -> None:
        if not self.run_dir:
            self.say("No run yet. Start one with "
                     '`/workflow:fine-tuning "what the model should do" --data FILE`.')
            return
        from ftagent.tui.engine import run_info
        from ftagent.tui.reports import status_markdown

        self.info = run_info(self.run_dir)
        self._show_info()
        self.say(status_markdown(self.info, self.tracker))

    def cmd_runs(self) -> None:
        self.action_show_runs()

    def cmd_resume(self, run_id: str) -> None:
        self._not_busy()
        self.busy = True
        self._resume(run_id)

    def cmd_approve(self) -> None:
        self.decide({"action": "approve"})

    def cmd_reject(self, reason: str) -> None:
        self.decide({"action": "reject", "reason": reason})

    def cmd_model(self, name: str) -> None:
        self.model_name = name
        self._show_info()
        self.say(f"Base model for the next run: `{name}`.")

    def cmd_help(self) -> None:
        self.say("## Commands\n\n" + help_markdown()
                 + "\n\nKeys: `?` help · `ctrl+p` palette · `ctrl+r` runs · `ctrl+g` gate · "
                 "`ctrl+t` theme · `ctrl+q` quit")

    def cmd_clear(self) -> None:
        self.chat.clear()

    def cmd_serve(self, action: str | None = None) -> None:
        server = getattr(self, "server", None)
        if action == "stop":
            if server is None:
                raise CommandError("nothing is being served")
            server.stop()
            self.server = None
            self.say("Server stopped.")
            return
        if action is not None:
            raise CommandError(f"unknown action '{action}'")
        if server is not None:
            self.say(f"Already serving at `{server.base_url}` (model `{server.model_id}`).")
            return
        merged = self.run_dir / "merged" if self.run_dir else None
        if merged is None or not (merged / "config.json").exists():
            raise CommandError("no merged model in this run yet: approve the run through "
                               "the deployment step first")
        self.say(f"Starting `ftagent serve {merged}` on 127.0.0.1…")
        self._serve(merged)

    @work(thread=True, exclusive=True, group="serve")
    def _serve(self, merged: Path) -> None:
        from ftagent.tools.serve.app import start_server_process

        try:
            self.server = start_server_process(merged, model_name=f"ftagent-{merged.parent.name}")
        except RuntimeError as exc:
            self.post_message(TaskDone(error=str(exc)))
            return
        url = self.server.base_url
        self.post_message(TaskDone(
            f"Serving **{self.server.model_id}** at `{url}` (OpenAI-compatible):\n\n"
            f"```bash\ncurl {url}/chat/completions -H 'Content-Type: application/json' -d "
            f"'{{\"model\": \"{self.server.model_id}\", \"messages\": [{{\"role\": "
            f"\"user\", \"content\": \"Hello\"}}]}}'\n```\n\n`/serve stop` stops it."))

    def cmd_quit(self) -> None:
        self.exit()

    def on_unmount(self) -> None:
        if getattr(self, "server", None) is not None:  # never leave a server behind
            self.server.stop()

    def _not_busy(self) -> None:
        if self.busy:
            raise CommandError(f"run {self.info.get('run_id', '')} is in progress; wait for "
                               "its next gate")

    def _run_file(self, rel: str) -> str:
        if not self.run_dir or not (self.run_dir / rel).exists():
            return ""
        return (self.run_dir / rel).read_text(encoding="utf-8")

    def _step(self, which: str) -> None:
        """A step's gate when the run waits there, else its result, else continue."""
        from ftagent.tui import reports

        if not self.run_dir:
            raise CommandError("no run yet")
        if self.request and self.request["gate"] in STEP_GATES[which]:
            self.action_show_gate()
            return
        render = {"train": reports.train_markdown, "eval": reports.eval_markdown,
                  "deploy": lambda d: reports.deploy_markdown(d, self.values)}[which]
        text = render(self.run_dir)
        if text:
            self.say(text)
            if which == "train" and (rows := reports.loss_rows(self.run_dir)):
                from ftagent.tui.widgets.loss_plot import LossPlot

                self.chat.add_widget(LossPlot(rows, classes="chat-plot"))
        elif self.busy:
            self.say("Not there yet: the run is working; progress shows as it goes.")
        elif self.request:
            self.say(f"The run waits at gate **{self.request['gate']}** first: `/approve`, "
                     "`/reject REASON`, or `ctrl+g` to see it.")
        elif self.info.get("status") in ("interrupted", "failed"):
            self._not_busy()
            self.busy = True
            self._resume(self.run_dir)
        else:
            self.say("That step has no result in this run.")

    # ---- gates ---------------------------------------------------------------------

    def decide(self, decision: dict) -> None:
        """Send the person's decision on the waiting gate; the driver resumes the graph."""
        if not self.request or not self.run_dir:
            self.error("no gate is waiting for a decision")
            return
        if self.busy:
            self.error("the run is already going on")
            return
        gate, self.request = self.request["gate"], None
        self.busy = self.deciding = True
        self._decide(self.run_dir, gate, decision)

    def _gate_answered(self, decision: dict | None) -> None:
        if decision is None:
            if self.request:
                self.say(f"The run waits at gate **{self.request['gate']}**: `/approve`, "
                         "`/reject REASON`, `/config`, or `ctrl+g` to see it again.")
            return
        self.decide(decision)

    def action_show_gate(self) -> None:
        if not self.request:
            self.error("no gate is waiting for a decision")
            return
        if isinstance(self.screen, MainScreen):
            from ftagent.tui.screens.gate import GateScreen

            self.push_screen(GateScreen(self.request, self.run_dir), self._gate_answered)

    def action_edit_config(self) -> None:
        from ftagent.tui.screens.config_editor import ConfigEditorScreen

        if not self.run_dir:
            self.error("no run yet: the config is written after the dataset gate")
            return
        if self.busy:
            self.error("the run is working; edit the config at its next gate")
            return
        path = self.run_dir / "config.yaml"
        if not path.exists() and not self.request:
            self.error("this run has no config.yaml")
            return
        gate = self.request["gate"] if self.request else None
        self.push_screen(ConfigEditorScreen(path if path.exists() else None, gate),
                         self._config_saved)

    def _config_saved(self, changes: dict | None) -> None:
        if changes is None:
            return
        listed = ", ".join(f"`{k}={v}`" for k, v in changes.items()) or "no changes"
        if self.request and changes:
            self.say(f"Config edited ({listed}): sent as the edit of gate "
                     f"**{self.request['gate']}**.")
            self.decide({"action": "edit", "changes": changes,
                         "reason": "edited in the terminal app"})
        else:
            self.say(f"Config saved ({listed}).")

    # ---- workers: the engine runs here, never on the UI thread -----------------------

    def _emit(self, event: dict) -> None:
        self.post_message(EngineEvent(event))

    def _drive(self, run_dir: Path, policy, initial: dict | None) -> None:
        driver = self.driver
        if driver is None:
            from ftagent.agent.service.session import drive as driver
        try:
            outcome = driver(run_dir, policy, initial, self._emit)
        except Exception as exc:  # drive records node failures itself; this is the rest
            self.post_message(TaskDone(error=f"{type(exc).__name__}: {exc}"))
            outcome = None
        self.post_message(RunEnded(outcome))

    @work(thread=True, exclusive=True, group="engine")
    def _start_run(self, goal: str, data: str, model: str | None, max_attempts: int) -> None:
        from ftagent.agent.service.session import ApprovalPolicy, initial_state
        from ftagent.tui.engine import InputError, create_workflow_run

        try:
            run_dir = create_workflow_run(goal, data, model, self.runs_root, max_attempts)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self.post_message(RunCreated(run_dir))
        self._drive(run_dir, ApprovalPolicy(), initial_state(run_dir))

    @work(thread=True, exclusive=True, group="engine")
    def _chat(self, line: str, yes: bool | None = None) -> None:
        """Free text goes to the conversational agent (agent/chat/assistant.py): the intent
        parser, then the configured LLM, with the same tools as `ftagent chat`. `yes`: the
        person's answer in the dialog to the proposal the chat is paused on."""
        try:
            bot = self._assistant()
            bot.ctx.run_dir, bot.ctx.last_outcome = self.run_dir, None
            bot.ctx.data_path = bot.ctx.data_path or self.data_path
            bot.ctx.model = bot.ctx.model or self.model_name
            before = bot.ctx.run_dir
            text = "".join(bot.reply(line) if yes is None else bot.resume(yes, line))
            proposal = bot.pending
        except Exception as exc:  # the chat never takes the app down
            self.post_message(TaskDone(error=f"{type(exc).__name__}: {exc}"))
            self.post_message(RunEnded(None))
            return
        if bot.ctx.run_dir is not None and bot.ctx.run_dir != before:
            self.post_message(RunCreated(bot.ctx.run_dir))
        self.post_message(TaskDone(text))
        self.post_message(RunEnded(bot.ctx.last_outcome))
        if proposal is not None:  # only the person's yes in the dialog applies it
            self.call_from_thread(self._confirm_proposal, proposal)

    def _confirm_proposal(self, proposal: dict) -> None:
        from ftagent.agent.chat.graph import proposal_markdown
        from ftagent.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            self.busy = True
            self._chat("Apply (y)" if yes else "Drop (n)", yes=bool(yes))

        self.push_screen(ConfirmScreen(proposal_markdown(proposal), yes="Apply", no="Drop"),
                         answered)

    def _assistant(self):
        if getattr(self, "_bot", None) is None:
            from ftagent.agent.chat.assistant import Assistant
            from ftagent.agent.chat.llm import load_settings
            from ftagent.agent.chat.tools import ChatContext

            ctx = ChatContext(runs_root=self.runs_root, on_event=self._emit)
            self._bot = Assistant(ctx, load_settings())
        return self._bot

    @work(thread=True, exclusive=True, group="engine")
    def _resume(self, run: str | Path) -> None:
        """`run`: an id typed by the person (looked up under the runs root only), or the
        folder of a run the app itself listed (a Path)."""
        from ftagent.agent.service.session import ApprovalPolicy
        from ftagent.tui.engine import InputError, check_resumable, find_run_dir

        try:
            run_dir = run if isinstance(run, Path) else find_run_dir(run, self.runs_root)
            check_resumable(run_dir)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self.post_message(RunCreated(run_dir))
        self._drive(run_dir, ApprovalPolicy(), None)

    @work(thread=True, exclusive=True, group="engine")
    def _decide(self, run_dir: Path, gate: str, decision: dict) -> None:
        from ftagent.agent.graph.gates import DecisionError
        from ftagent.tui.engine import one_decision

        button = {"approve": "Approve (a)", "reject": "Reject (r)", "edit": "Edit (e)"}
        try:
            policy = one_decision(gate, **decision, source="tui",
                                  detail=f"{button[decision['action']]} in the {gate} gate")
        except DecisionError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self._drive(run_dir, policy, None)

    @work(thread=True, exclusive=True, group="tasks")
    def _side_task(self, kind: str, *args: str) -> None:
        from ftagent.tui.engine import InputError, evaluate_models, validate_data

        try:
            if kind == "validate":
                text, clean = validate_data(args[0], self.model_name)
            else:
                text = evaluate_models(*args)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            return
        except Exception as exc:  # a tool failing is news for the chat, not a crash
            self.post_message(TaskDone(error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(TaskDone(text))

    @work(thread=True, exclusive=True, group="scan")
    def _scan_runs(self) -> None:
        from ftagent.tui.engine import resumable_runs

        runs = resumable_runs(self.runs_root)
        if runs:
            self.post_message(RunsFound(runs))

    # ---- messages from the workers -------------------------------------------------

    def on_run_created(self, message: RunCreated) -> None:
        self._open(message.run_dir)

    def _open(self, run_dir: Path, replay: bool = True) -> None:
        from ftagent.tui.engine import read_events, run_info

        self.run_dir = Path(run_dir)
        self.tracker = StepTracker.from_events(read_events(run_dir)) if replay else StepTracker()
        self.info = run_info(run_dir)
        self.sub_title = f"run {self.info['run_id']}"
        self._show_info()

    def on_engine_event(self, message: EngineEvent) -> None:
        from ftagent.tui.reports import event_line

        event = message.event
        self.tracker.apply(event)
        kind = event.get("type")
        if kind == "train_progress":
            self.training.update_from(event)
        elif kind == "node_started":
            if event["node"] == "trainer":
                self.training.reset(self.tracker.attempt or None)
                self.training.add_class("shown")
            else:
                self.training.remove_class("shown")
        elif kind == "node_finished" and event.get("node") == "planner":
            self.info.update(model=event.get("model"), method=event.get("method"))
        if kind in ("run_started", "run_resumed", "node_started"):
            self.info.update(status="running", gate=None)
        elif kind == "gate_waiting":
            self.info.update(status="waiting", gate=event.get("gate"))
        line = None if kind == "run_resumed" and self.deciding else event_line(event)
        if line:
            self.say(line, role="event")
        self._show_info()

    def on_run_ended(self, message: RunEnded) -> None:
        from ftagent.tui.engine import run_info
        from ftagent.tui.reports import final_markdown

        self.busy = self.deciding = False
        outcome = message.outcome
        if outcome is None:
            return
        self.values = outcome.values or {}
        self.info = run_info(outcome.run_dir)
        self._show_info()
        if outcome.status == "waiting":
            self.request = outcome.request
            self.say(f"◆ **Gate {outcome.gate}** — {outcome.request['question']}  \n"
                     "Decide in the dialog (`a` approve · `r` reject · `e` edit), or with "
                     "`/approve` · `/reject REASON` · `/config`.", role="gate")
            self.action_show_gate()
        else:
            self.request = None
            self.training.remove_class("shown")
            self.say(final_markdown(outcome.status, self.values, outcome.run_dir),
                     role="report")

    def on_task_done(self, message: TaskDone) -> None:
        if message.error:
            self.error(message.error)
        else:
            self.say(message.markdown, role="report")

    def on_runs_found(self, message: RunsFound) -> None:
        from ftagent.tui.screens.confirm import ConfirmScreen

        run = message.runs[0]
        where = f"waiting at gate **{run['gate']}**" if run["status"] == "waiting" else (
            "stopped mid-step (its process ended)" if run["status"] == "interrupted"
            else "failed")
        more = f"\n\n({len(message.runs) - 1} more in `/runs`.)" if len(message.runs) > 1 else ""
        question = (f"## Resume a run?\n\nRun `{run['run_id']}` ({run['goal']}) is {where}. "
                    f"Resume it from its last checkpoint?{more}")

        def answered(yes: bool | None) -> None:
            if yes and not self.busy:
                self.busy = True
                self._resume(Path(run["run_dir"]))
            else:
                self.say(f"Run `{run['run_id']}` is left as it is: `/resume {run['run_id']}` "
                         "or `/runs` later.")

        self.push_screen(ConfirmScreen(question, yes="Resume", no="Not now"), answered)

    # ---- actions -------------------------------------------------------------------

    def action_help(self) -> None:
        from ftagent.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_status(self) -> None:
        self.cmd_status()

    def action_new_run(self) -> None:
        box = self.main.query_one(CommandInput)
        box.value = '/workflow:fine-tuning "" --data '
        box.cursor_position = len('/workflow:fine-tuning "')
        box.focus()

    def action_show_runs(self) -> None:
        from ftagent.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen(self.runs_root), self._run_chosen)

    def _run_chosen(self, choice: tuple[str, str] | None) -> None:
        if not choice:
            return
        what, run_dir = choice
        if what == "resume":
            if self.busy:
                self.error("a run is in progress; wait for its next gate")
                return
            self.busy = True
            self._resume(Path(run_dir))
            return
        if self.busy:
            self.error("a run is in progress; open another run at its next gate")
            return
        self._open(Path(run_dir))
        self.request = self._waiting_request(Path(run_dir))
        self.cmd_status()

    def _waiting_request(self, run_dir: Path) -> dict | None:
        """A waiting run's gate request, from its last `gate_waiting` event."""
        from ftagent.tui.engine import read_events

        if self.info.get("status") != "waiting":
            return None
        for event in reversed(read_events(run_dir)):
            if event.get("type") == "gate_waiting":
                return {k: v for k, v in event.items() if k not in ("type", "time")}
        return None


def run_app(runs_root: Path | None = None) -> int:
    """`ftagent` with no arguments. Quitting while the driver works ends the process at
    once: the training job runs in its own session and keeps going, and the run (its
    manifest says running, its process is gone) is offered for resuming next time."""
    import asyncio

    app = FtagentApp(runs_root=runs_root)
    # Our own loop: asyncio.run() would join the worker threads on the way out, i.e. wait
    # for the driver to reach its next gate.
    loop = asyncio.new_event_loop()
    app.run(loop=loop)
    if app.busy and app.run_dir:
        print(f"Run {app.run_dir.name} stopped mid-step; `ftagent` offers to resume it "
              f"(or: ftagent resume {app.run_dir.name}).", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)  # the driver thread would otherwise hold the exit until its next gate
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    return app.return_code or 0
