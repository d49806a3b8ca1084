"""Free text typed in the input line goes to the conversational agent
(agent/chat/assistant.py): the intent parser, then the configured LLM, with the same tools
as `ftagent chat`. The whole call to the assistant is one method, `_chat_with_assistant`
(a thread worker), so a change to how the app talks to the assistant happens in one place;
`_send_to_assistant` is only the UI-thread check before it."""

from __future__ import annotations

from ftagent.tui.commands import CommandError
from ftagent.tui.messages import RunCreated, RunEnded, TaskDone
from textual import work


class AssistantChat:
    """Mixed into FtagentApp (tui/app.py): uses its `busy`, `runs_root`, `run_dir`,
    `data_path`, `model_name`, `error`, `_not_busy` and `_emit` (tui/workers.py). Same
    "engine" group as the driver: the assistant may start or resume a run itself."""

    _bot = None  # the Assistant, made on first use: its imports are heavy

    def _send_to_assistant(self, line: str) -> None:
        """On the UI thread: one conversation turn at a time, and never during a run."""
        try:
            self._not_busy()
        except CommandError as exc:
            self.error(str(exc))
            return
        self.busy = True
        self._chat_with_assistant(line)

    @work(thread=True, exclusive=True, group="engine")
    def _chat_with_assistant(self, line: str, yes: bool | None = None) -> None:
        """Send one chat line to the assistant and post its reply; a run the assistant
        started or resumed is opened in the app, and RunEnded always follows. `yes`: the
        person's answer in the dialog to the proposal the chat is paused on."""
        try:
            if self._bot is None:
                from ftagent.agent.chat.assistant import Assistant
                from ftagent.agent.chat.llm import load_settings
                from ftagent.agent.chat.tools import ChatContext

                ctx = ChatContext(runs_root=self.runs_root, on_event=self._emit)
                self._bot = Assistant(ctx, load_settings())
            bot = self._bot
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
        """The proposal the chat paused on, in the confirmation dialog; its answer resumes
        the conversation."""
        from ftagent.agent.chat.graph import proposal_markdown
        from ftagent.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            self.busy = True
            self._chat_with_assistant("Apply (y)" if yes else "Drop (n)", yes=bool(yes))

        self.push_screen(ConfirmScreen(proposal_markdown(proposal), yes="Apply", no="Drop"),
                         answered)
