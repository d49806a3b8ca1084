"""`/serve`: the run's merged model behind ftagent's OpenAI-compatible server, in its own
process on 127.0.0.1, until `/serve stop` or the app quits (never left behind)."""

from __future__ import annotations

from pathlib import Path

from ftagent.tui.commands import CommandError
from ftagent.tui.messages import TaskDone
from textual import work


class Serving:
    """Mixed into FtagentApp (tui/app.py): `server` is the running server (None when
    nothing is served); the app calls `_stop_server` when it unmounts."""

    server = None

    def cmd_serve(self, action: str | None = None) -> None:
        server = self.server
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
        """A thread: starting the server waits until it answers (it loads the model)."""
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

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
