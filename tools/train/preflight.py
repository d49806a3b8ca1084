"""Pre-flight: find in seconds what would make a training run fail minutes or hours in.

Each `check_*` function is pure (plain values in, a `Check` out) so the rules are unit
tested on any machine; the probes do the I/O; `preflight()` joins them, cheapest first.
The checks live by what they look at: `environment_checks` (libraries, CUDA, bf16, the
QLoRA backend), `capacity_checks` (memory, disk), `file_checks` (model, data, output_dir);
`check_result` holds what they return. Every failing check says what to change, in the
config's own field names.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftagent.tools.config.train_config import TrainConfig
from ftagent.tools.data.facts import TokenFacts
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.estimate import Shape, shape_from_config
from ftagent.tools.train.capacity_checks import disk_check, existing_parent, memory_check
from ftagent.tools.train.check_result import PreflightReport
from ftagent.tools.train.environment_checks import (
    check_bf16,
    check_cuda,
    probe_cuda,
    qlora_check,
    version_checks,
)
from ftagent.tools.train.file_checks import (
    check_data_file,
    check_output_dir,
    entries,
    file_size,
    model_folder,
)


def _token_facts(cfg: TrainConfig, folder: Path | None) -> TokenFacts:
    """The train file's token facts with the model's tokenizer, as the planner measures
    them; rows as long as max_length, all of them loss, when they cannot be measured."""
    from ftagent.tools.data.tokens import train_file_facts

    facts = train_file_facts(cfg.train_file, folder) if folder else None
    return facts or TokenFacts.worst_case(cfg.max_length)


def _shape(folder: Path | None) -> Shape | None:
    """The model's shape for the memory and disk estimates; None skips them quietly."""
    try:
        return shape_from_config(json.loads((folder / "config.json").read_text()))
    except (TypeError, OSError, ValueError, KeyError):
        return None  # the model config check already reports it


def preflight(
    cfg: TrainConfig, hw: Hardware | None = None, model_dir: Path | None = None
) -> PreflightReport:
    """Every check, cheapest first; only the QLoRA probe touches the accelerator."""
    if hw is None:
        from ftagent.tools.hardware import probe

        hw = probe(existing_parent(Path(cfg.output_dir)))
    gpu = hw.gpus[0] if hw.gpus else None
    checks = version_checks()
    checks.append(check_cuda(gpu, *probe_cuda()))
    compute = cfg.quantization.compute_dtype if cfg.method == "qlora" else "auto"
    checks.append(check_bf16(cfg.bf16, gpu, hw.cpu_bf16, compute))
    folder, model_checks = model_folder(cfg, model_dir)
    checks += model_checks
    shape = _shape(folder)
    if shape:
        checks.append(memory_check(shape, cfg, hw, _token_facts(cfg, folder)))
    if folder:
        checks.append(disk_check(cfg, folder, shape))
    checks.append(check_data_file("train_file", cfg.train_file, file_size(cfg.train_file)))
    if cfg.val_file:
        checks.append(check_data_file("val_file", cfg.val_file, file_size(cfg.val_file)))
    out = Path(cfg.output_dir).expanduser()
    checks.append(check_output_dir(cfg.output_dir, entries(out)))
    if cfg.method == "qlora":
        checks.append(qlora_check("cuda" if gpu else "cpu", cfg.quantization))
    return PreflightReport(checks=checks)


def format_report(report: PreflightReport) -> str:
    """A plain-text table, one check a line, each fix under its failure."""
    label = {"error": "FAIL", "warning": "WARN", "info": "ok"}
    width = max((len(c.name) for c in report.checks), default=5)
    lines = [f"{'':4}  {'check':<{width}}  detail"]
    for c in report.checks:
        lines.append(f"{label[c.severity] if not c.ok else 'ok':4}  {c.name:<{width}}  {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"{'':4}  {'':<{width}}  fix: {c.fix}")
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "ready to train" if report.ok else "training would fail; fix the errors above"
    lines.append(f"\npre-flight: {n_err} error(s), {n_warn} warning(s): {verdict}")
    return "\n".join(lines)
