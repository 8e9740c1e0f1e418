"""The pipeline config: one YAML, one typed section per stage.

Every stage command reads the same file type and runs its own section, so one file drives
the whole loop, and a file with only ``run_dir`` and one section drives one stage. A bad
field fails before any work starts, naming the field and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentray.collect.config import CollectConfig
from agentray.eval.config import EvalConfig
from agentray.instruct.config import InstructConfig
from agentray.model.tiny import TINY_MODEL
from agentray.process.config import ProcessConfig
from agentray.serve.config import ServeConfig
from agentray.train.config import TrainConfig


class ConfigError(ValueError):
    """A config that does not validate; the message names every bad field."""


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_dir: str = Field("runs/quickstart", description="all stage outputs go under this folder")
    model: str = Field(TINY_MODEL, description="HF name or path of the model to tune")
    # not part of `pipeline`/`quickstart` (they use the procedural tasks, no teacher):
    # `agentray instruct` runs it, and collect reads its output through task_files
    instruct: InstructConfig = Field(default_factory=InstructConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _propagate_shared(self) -> PipelineConfig:
        """Stages that did not name a model use the pipeline's; eval plays the tasks in the
        format collection used, and instruct seeds and deduplicates against collection's
        tasks, unless they set their own family configs; eval's client reads the key serve
        requires."""
        for section in (self.process, self.train):
            if "model" not in section.model_fields_set:
                section.model = self.model
        if "family_configs" not in self.eval.model_fields_set:
            self.eval.family_configs = dict(self.collect.family_configs)
        if "family_configs" not in self.instruct.model_fields_set:
            self.instruct.family_configs = dict(self.collect.family_configs)
        # eval talks to this pipeline's own served model: it sends the key serve requires
        if "api_key_env" not in self.eval.policy.model_fields_set and self.serve.api_key_env:
            self.eval.policy.api_key_env = self.serve.api_key_env
        return self


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(
                f"config {path}: expected a mapping of sections, got {type(data).__name__}"
            )
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return validate_config(data, source=str(path or "defaults"))


def validate_config(data: dict[str, Any], source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown field; allowed here: {', '.join(_allowed_fields(err['loc']))}"
        got = err.get("input")
        got_text = "" if err["type"] == "extra_forbidden" else f" (got {got!r})"
        lines.append(f"  {field}: {message}{got_text}")
    return "\n".join(lines)


def _allowed_fields(loc: tuple) -> list[str]:
    model: Any = PipelineConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def dump_config(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_reference() -> str:
    """Markdown tables of every config section (the README's config reference)."""
    lines: list[str] = []
    _reference_section(PipelineConfig, "", lines)
    return "\n".join(lines) + "\n"


def _reference_section(model: type[BaseModel], prefix: str, lines: list[str]) -> None:
    nested: list[tuple[str, type[BaseModel]]] = []
    rows = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            nested.append((f"{prefix}{name}", field.annotation))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(
            f"| `{prefix}{name}` | `{_type_name(field.annotation)}` | `{default!r}` | "
            f"{(field.description or '').replace('|', '/')} |"
        )
    if rows:
        title = prefix.rstrip(".") or "top level"
        lines += [
            f"**{title}**",
            "",
            "| field | type | default | meaning |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    for name, sub in nested:
        _reference_section(sub, f"{name}.", lines)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return (text or str(annotation)).replace("typing.", "").replace("|", "/")
