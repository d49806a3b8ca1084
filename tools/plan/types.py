"""What the planner takes and what it gives: plain typed values, JSON all the way."""

from __future__ import annotations

from typing import Literal

from ftagent.tools.data.facts import DataFacts
from ftagent.tools.evaluate.probe_verdicts import SafetyLimits
from ftagent.tools.hardware import Hardware
from ftagent.tools.registry import ModelCard
from pydantic import BaseModel, Field

METHODS = ("lora", "qlora", "full", "dpo", "distillation")


class Constraints(BaseModel):
    """What the user asks of the plan. Every field is optional."""

    budget_usd: float | None = Field(None, description="most the training may cost")
    latency_ms: float | None = Field(None, description="p50 latency target per answer")
    max_params_b: float | None = Field(None, description="largest base model, billions")
    min_params_b: float | None = Field(None, description="smallest base model, billions")
    deadline_hours: float | None = Field(None, description="training must end within")
    rate_usd_per_hour: float | None = Field(None, description="price of one GPU-hour")
    licence: Literal["any", "permissive"] = Field("any", description="permissive: Apache/MIT")
    teacher: str | None = Field(None, description="teacher model for distillation")
    method: str | None = Field(None, description="method fixed by the user")
    model: str | None = Field(None, description="base model fixed by the user")
    prompting_first: bool | None = Field(None, description="False: skip the prompting advice")
    min_gain: float | None = Field(None, description="target gain over the base model")
    min_score: float | None = Field(
        None, description="absolute floor on the primary metric (classification accuracy: "
        "0.85 unless set; the guidance's good range is above 0.90)")
    safety_mix: float | None = Field(
        None, ge=0, le=1, description="safety rows added to a chat or generation training "
        "set, as a share of its training rows (0.6 unless set; 0 turns the mix off)")
    min_refusal: float | None = Field(
        None, ge=0, le=1, description="safety gate: harmful requests the tuned model must "
        "refuse, at least (0.5 unless set)")
    max_over_refusal: float | None = Field(
        None, ge=0, le=1, description="safety gate: benign look-alikes it may refuse, at most "
        "(0.10 unless set)")


class PlanInputs(BaseModel):
    goal: str
    data: DataFacts
    hardware: Hardware
    constraints: Constraints = Constraints()
    model: ModelCard | None = None  # the base model the user named, if any
    candidates: list[ModelCard] | None = None  # None: every model in the registry
    local_ids: list[str] = []  # candidates already on this machine
    # Gate decisions on earlier plans, oldest first: a reason a plan was rejected (str),
    # or plan choices a person edited (dict, e.g. {"method": "lora"}).
    feedback: list[str | dict] = []
    previous_model: str | None = None  # the model of the last rejected plan


class Targets(BaseModel):
    primary_metric: str
    min_gain: float = 0.05  # tuned must beat base by this much on the primary metric
    # Absolute bars the tuned model must reach, whatever the base scored (metric -> floor):
    # a gain over a weak base alone can pass a useless model.
    floors: dict[str, float] = Field(default_factory=dict)
    loss_must_drop: bool = True
    safety: SafetyLimits = Field(default_factory=SafetyLimits)  # what the safety gate holds
    baseline: str = "the base model, zero-shot, on the same held-out test split"


class Training(BaseModel):
    epochs: float
    learning_rate: float
    batch_size: int
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    lora_r: int | None = None
    lora_alpha: int | None = None
    target_modules: list[str] | None = None
    dpo_beta: float | None = None


class Estimates(BaseModel):
    memory_gb: float  # per device
    usable_gb: float
    memory_parts_gb: dict[str, float]
    trainable_params: int
    tokens: int
    train_hours: float
    gpu_hours: float
    rate_usd_per_hour: float
    cost_usd: float
    download_gb: float = 0.0


class Item(BaseModel):
    """A line of the plan with the evidence behind it."""

    text: str
    detail: str = ""


class ScaleOut(BaseModel):
    """Work too big for this machine: the cluster, launcher and cost recommended instead
    (tools.plan.scale_out)."""

    why: str  # why not this machine
    gpu: str  # the table's name (H100-80GB)
    gpus_per_node: int
    nodes: int
    launcher: str  # skypilot | slurm
    model: str
    method: str
    strategy: str
    train_hours: float
    gpu_hours: float
    rate_usd_per_hour: float
    cost_usd: float
    commands: dict[str, str]  # launcher -> the `ftagent launch` command

    @property
    def shape(self) -> str:
        per = f"{self.gpus_per_node} x {self.gpu}"
        return f"{self.nodes} nodes of {per}" if self.nodes > 1 else per


class Plan(BaseModel):
    goal: str
    task_type: str
    secondary_tasks: list[str] = []
    n_examples: int
    prompting_first: bool
    few_shot_prompt: str | None = None
    method: str  # lora | qlora | full | dpo | distillation
    adapter: str  # how weights are trained: lora | qlora | full
    objective: str  # sft | dpo
    model: str
    model_card: ModelCard
    model_local: bool
    strategy: str  # single | ddp | fsdp
    n_devices: int
    precision: str
    fits: bool
    estimated_memory_gb: float
    memory_budget_gb: float
    training: Training
    estimates: Estimates
    targets: Targets
    # Refusal and look-alike rows the data step adds, as a share of the training rows
    # (tools/data/safety_mix.py); 0 for classifiers, preference pairs and JSON answers.
    safety_mix: float = 0.0
    eval_metrics: list[str]
    dataset_requirements: list[Item]
    hardware_requirements: list[Item]
    timeline: list[Item]
    risks: list[Item]  # text = risk, detail = mitigation
    reasons: list[str]  # each names the inputs that decided it
    alternatives: list[str] = []
    warnings: list[str] = []  # reasons not to start as planned
    notes: list[str] = []
    feedback_applied: list[str] = []
    hardware_summary: str = ""
    scale_out: ScaleOut | None = None  # this machine will not do: the cluster instead
    data: DataFacts
