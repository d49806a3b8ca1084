"""What each slash command does. The table and the parser are in tui/commands.py (pure, no
Textual); `dispatch` calls the method named after the command: `/workflow:fine-tuning` is
`cmd_workflow_fine_tuning`, its arguments the parsed ones. `/serve` is in tui/serving.py
with its worker. A handler raises CommandError for a problem the person can fix; dispatch
shows it with the command's usage.
"""

from __future__ import annotations

from ftagent.tui.commands import COMMANDS, CommandError, ParsedCommand, help_markdown
from ftagent.tui.gates import STEP_GATES


class SlashCommands:
    """Mixed into FtagentApp (tui/app.py): reads and sets its state (`run_dir`, `request`,
    `busy`, `data_path`, `model_name`, `info`, `tracker`) and starts its workers
    (tui/workers.py)."""

    def dispatch(self, command: ParsedCommand) -> None:
        handler = getattr(self, "cmd_" + command.name.replace(":", "_").replace("-", "_"))
        try:
            handler(**command.args)
        except CommandError as exc:
            self.error(f"{exc}. Usage: {COMMANDS[command.name].usage}")

    # ---- workflows -----------------------------------------------------------------

    def cmd_workflow_fine_tuning(self, goal: str, data: str | None = None,
                                 model: str | None = None, max_attempts: str = "2",
                                 provider_url: str | None = None,
                                 provider_key_env: str | None = None) -> None:
        data = data or self.data_path
        if not data:
            raise CommandError("needs --data PATH (or set it first with /data PATH)")
        if not max_attempts.isdigit() or int(max_attempts) < 1:
            raise CommandError(f"--max-attempts must be a whole number from 1, got "
                               f"'{max_attempts}'")
        self._not_busy()
        self.data_path = data
        self._choose_model(model, provider_url, provider_key_env)
        self.busy = True
        self.say(f"Checking `{data}` and the model, then planning…")
        self._start_run(goal, data, self.model_name, int(max_attempts), dict(self.provider))

    def cmd_workflow_dataset_engineering(self, path: str) -> None:
        self.say(f"Validating `{path}` (every check of `ftagent data validate`)…")
        self._side_task("validate", path)

    def cmd_workflow_model_evaluation(self, base: str, tuned: str, test: str) -> None:
        self.say(f"Scoring `{base}` against `{tuned}` on `{test}` (with the probes)…")
        self._side_task("evaluate", base, tuned, test)

    # ---- the current run -----------------------------------------------------------

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

    # ---- the next run and the app ----------------------------------------------------

    def cmd_model(self, name: str, provider_url: str | None = None,
                  provider_key_env: str | None = None) -> None:
        from ftagent.agent.service.new_run import InputError, provider_settings

        try:
            settings = provider_settings(name, provider_url, provider_key_env)
        except InputError as exc:
            raise CommandError(str(exc)) from None
        self._choose_model(name, provider_url, provider_key_env)
        self._show_info()
        self.say(f"Base model for the next run: `{name}`" + (
            f" at {settings.url} (key from {settings.api_key_env})." if settings else "."))

    def cmd_help(self) -> None:
        self.say("## Commands\n\n" + help_markdown()
                 + "\n\nKeys: `?` help · `ctrl+p` palette · `ctrl+r` runs · `ctrl+g` gate · "
                 "`ctrl+t` theme · `ctrl+q` quit")

    def cmd_clear(self) -> None:
        self.chat.clear()

    def cmd_quit(self) -> None:
        self.exit()

    # ---- helpers -------------------------------------------------------------------

    def _choose_model(self, model: str | None, provider_url: str | None,
                      provider_key_env: str | None) -> None:
        """The next run's base model and provider options (`new_run.choose_model`; what
        they mean is `new_run.provider_settings`'s)."""
        from ftagent.agent.service.new_run import choose_model

        self.model_name, self.provider = choose_model(model, provider_url, provider_key_env,
                                                      (self.model_name, self.provider))

    def _not_busy(self) -> None:
        """One run at a time: anything that would start the driver checks this first."""
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
