"""Pre-flight checks of the files a run reads and writes: the model folder (config,
safetensors weights, chat template, tokenizer), the data files, and an output_dir that
must not hold a finished run."""

from __future__ import annotations

from pathlib import Path

from ftagent.tools.config.train_config import TrainConfig
from ftagent.tools.train.check_result import Check, failed, passed

FINISHED_MARKERS = ("result.json", "adapter", "model")  # what train.py writes on success
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def check_model_files(folder: Path, names: set[str], has_template: bool) -> list[Check]:
    """From the folder's file names alone: config, safetensors weights, template, tokenizer."""
    config = (
        passed("model config", f"{folder}/config.json")
        if "config.json" in names
        else failed("model config", "error", f"{folder} has no config.json",
                   "point model at a Hugging Face model folder (with config.json)")
    )
    return [config, _weights_check(folder, names), _template_check(folder, has_template),
            _tokenizer_check(folder, names)]


def _weights_check(folder: Path, names: set[str]) -> Check:
    safetensors = sorted(n for n in names if n.endswith(".safetensors"))
    pickles = sorted(n for n in names if n.endswith(WEIGHT_SUFFIXES))
    if safetensors:
        return passed("model weights", ", ".join(safetensors[:3]))
    if pickles:
        return failed(
            "model weights", "error", f"{folder} holds only {', '.join(pickles[:3])}: ftagent "
            "loads safetensors only (pickled weights can run code when loaded)",
            "convert them to safetensors once, from a trusted source: python -c \"from "
            "transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{folder}').save_pretrained('{folder}')\"",
        )
    return failed("model weights", "error", f"{folder} has no *.safetensors weights",
                 "point model at a folder with the model's safetensors files")


def _template_check(folder: Path, has_template: bool) -> Check:
    if has_template:
        return passed("chat template", "the tokenizer has a chat template")
    return failed(
        "chat template", "error", f"{folder} has no chat template: chat examples cannot be "
        "formatted",
        "use an instruct model (e.g. model: smollm2-135m-instruct), or set a template: "
        f"write it to {folder}/chat_template.jinja",
    )


def _tokenizer_check(folder: Path, names: set[str]) -> Check:
    found = [n for n in TOKENIZER_FILES if n in names]
    if found:
        return passed("tokenizer", ", ".join(found))
    return failed(
        "tokenizer", "error", f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)})",
        f"copy the base model's tokenizer files into {folder} (tokenizer.save_pretrained)",
    )


def check_data_file(field: str, path: str, size: int | None) -> Check:
    if size is None:
        return failed(field, "error", f"{field} {path} does not exist (or is not a file)",
                     f"correct {field} in the config (a relative path is read from the "
                     "directory training starts in)")
    if size == 0:
        return failed(field, "error", f"{field} {path} is empty",
                     f"regenerate it (ftagent data prepare) or point {field} at the data")
    return passed(field, f"{path} ({size} bytes)")


def file_size(path: str) -> int | None:
    p = Path(path).expanduser()
    return p.stat().st_size if p.is_file() else None


def check_output_dir(path: str, entries: set[str]) -> Check:
    """A finished run is evidence for a result; training into it would overwrite it."""
    finished = [m for m in FINISHED_MARKERS if m in entries]
    if finished:
        return failed(
            "output_dir", "error", f"{path} holds a finished run ({', '.join(finished)}); "
            "finished runs are never overwritten",
            f"choose a new output_dir (e.g. {path.rstrip('/')}-2)",
        )
    if "checkpoints" in entries:
        return passed("output_dir", f"{path} holds checkpoints: training resumes from the last")
    return passed("output_dir", f"{path} is free")


def entries(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def model_folder(cfg: TrainConfig, model_dir: Path | None) -> tuple[Path | None, list[Check]]:
    if model_dir is None:
        from ftagent.tools.models import ModelNotFoundError, resolve_model

        try:
            model_dir = resolve_model(cfg.model).path
        except ModelNotFoundError as exc:
            return None, [failed("model", "error", str(exc), "set model to a local HF folder "
                                "or smollm2-135m-instruct")]
    from ftagent.tools.registry import has_chat_template

    folder = Path(model_dir)
    try:
        template = has_chat_template(folder)
    except (OSError, ValueError):  # unreadable tokenizer_config.json: the tokenizer check says
        template = False
    return folder, check_model_files(folder, entries(folder), template)
