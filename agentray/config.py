"""The pipeline config: one YAML, one typed section per stage.

Every stage command reads the same file type and runs its own section, so one file drives
the whole loop, and a file with only ``run_dir`` and one section drives one stage. The env
families' settings are one typed section, ``envs:``, that every stage playing tasks reads.
A bad field, down to the leaves, fails before any work starts, naming the field and what
is allowed.
"""

from __future__ import annotations

import copy
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentray.collect import CollectConfig
from agentray.envs.config import EnvsConfig
from agentray.envs.registry import register_family
from agentray.eval import EvalConfig
from agentray.instruct import InstructConfig
from agentray.model.tiny import TINY_MODEL
from agentray.paths import check_run_dir
from agentray.policies.config import OpenAIConfig
from agentray.process import ProcessConfig
from agentray.registry import is_import_path
from agentray.serve import ServeConfig
from agentray.train import TrainConfig


class ConfigError(ValueError):
    """A config that does not validate; the message names every bad field."""


class ConfigDeprecationWarning(FutureWarning):
    """A config key that still works but has moved; the message names the new key."""


# Old homes of the families' settings, moved into ``envs:`` (for one release).
DEPRECATED_FAMILY_KEYS: tuple[tuple[str, ...], ...] = (
    ("collect", "family_configs"),
    ("eval", "family_configs"),
    ("instruct", "family_configs"),
    ("collect", "policy", "family_configs"),
    ("eval", "policy", "family_configs"),
)
# Keys that no longer mean anything (the expert gets each episode's task): dropped.
DROPPED_KEYS: tuple[tuple[str, ...], ...] = (
    ("collect", "policy", "families"),
    ("eval", "policy", "families"),
)


# Where a config may name a plug-in family as ``package.module:Class``.
PLUGIN_FAMILY_KEYS = (("collect", "families"), ("eval", "families"), ("eval", "held_out"))


class IterateConfig(BaseModel):
    """Self-improvement rounds (``agentray iterate``): round 0 is the pipeline; each later
    round's model of the round before explores the train tasks, its successes join the data."""

    model_config = ConfigDict(extra="forbid")

    samples_per_task: int = Field(
        2, gt=0, description="K: episodes per train task the previous round's model plays"
    )
    temperature: float = Field(
        0.8, ge=0, description="sampling temperature of the exploring model (0: greedy)"
    )
    keep_per_task: int = Field(
        1,
        gt=0,
        description="successful trajectories kept per task id over all rounds (after dedup "
        "by task and by identical conversation)",
    )
    prefer: Literal["earliest", "latest"] = Field(
        "earliest",
        description="which successes fill keep_per_task first: earliest (the teacher's, then "
        "round 1's, ...) or latest (the newest round's)",
    )
    train_from: Literal["base", "previous"] = Field(
        "base",
        description="each round trains the pipeline's base model, or continues from the "
        "previous round's model",
    )
    families: list[str] | None = Field(
        None, description="families explored (default: collect.families)"
    )
    max_tasks_per_family: int | None = Field(
        None, gt=0, description="first N train tasks of each family explored (default: collect's)"
    )
    device: str = Field("cpu", description="torch device of the exploring model, e.g. cuda")
    max_new_tokens: int | None = Field(
        None, gt=0, description="tokens per turn of the exploring model (default: eval's policy)"
    )
    preference_pairs: bool = Field(
        False,
        description="also write each round's explored successes and failures of the same task "
        "as chosen/rejected pairs (ETO-style) under round-<k>/pairs (prompt, chosen, rejected "
        "conversations, as TRL's DPO trainer reads them)",
    )
    pairs_per_task: int = Field(
        2, gt=0, description="at most this many preference pairs per task and round"
    )
    train_loss: Literal["sft", "dpo"] = Field(
        "sft",
        description="how rounds >= 1 train: sft on the merged data, or dpo on the round's "
        "preference pairs (round-<k>/pairs; needs preference_pairs and train_from: previous, "
        "so the reference is the model that explored them; train.dpo sets beta and "
        "label_smoothing)",
    )

    @model_validator(mode="after")
    def _dpo_needs_pairs(self) -> IterateConfig:
        if self.train_loss == "dpo" and not (
            self.preference_pairs and self.train_from == "previous"
        ):
            raise ValueError(
                "iterate.train_loss 'dpo' needs iterate.preference_pairs: true and "
                "iterate.train_from: previous (the round's pairs, scored against the model "
                "that explored them)"
            )
        return self


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_dir: str = Field("runs/quickstart", description="all stage outputs go under this folder")
    model: str = Field(TINY_MODEL, description="HF name or path of the model to tune")
    envs: EnvsConfig = Field(  # type: ignore[valid-type]
        default_factory=EnvsConfig,
        description="each env family's settings (tasks, limits, prompts), read by collect, "
        "eval, instruct and the expert",
    )
    # not part of `pipeline`/`quickstart` (they use the procedural tasks, no teacher):
    # `agentray instruct` runs it, and collect reads its output through task_files
    instruct: InstructConfig = Field(default_factory=InstructConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    iterate: IterateConfig = Field(
        default_factory=IterateConfig, description="self-improvement rounds (agentray iterate)"
    )

    _run_dir = field_validator("run_dir")(check_run_dir)

    @model_validator(mode="before")
    @classmethod
    def _move_deprecated_keys(cls, data: Any) -> Any:
        """``<stage>.family_configs`` and ``<stage>.policy.family_configs`` move into
        ``envs:`` (an error where two places set one family differently); the expert's
        ``policy.families`` is dropped. Each prints a deprecation warning."""
        if not isinstance(data, dict):
            return data
        data = copy.deepcopy(data)
        envs = data.get("envs")
        if envs is None:
            envs = {}
        if not isinstance(envs, dict):
            return data  # the envs field reports it
        set_by = dict.fromkeys(envs, "envs")
        for path in DEPRECATED_FAMILY_KEYS:
            found, value = _pop_path(data, path)
            if not found:
                continue
            key = ".".join(path)
            warnings.warn(
                f"{key} is deprecated: give the families' settings under envs "
                f"(envs.<family>.<field>); moved there for this run",
                ConfigDeprecationWarning,
                stacklevel=2,
            )
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValueError(f"{key}: expected a mapping of family -> settings")
            for family, settings in value.items():
                if family in envs and not _same_settings(family, envs[family], settings):
                    raise ValueError(
                        f"{key}.{family} disagrees with {set_by[family]}.{family}; give the "
                        f"family's settings once, under envs.{family}"
                    )
                envs[family] = settings
                set_by[family] = f"{key}"
        for path in DROPPED_KEYS:
            found, _ = _pop_path(data, path)
            if found:
                warnings.warn(
                    f"{'.'.join(path)} is deprecated and ignored: the expert plays each "
                    "episode's own task (family settings: envs.<family>)",
                    ConfigDeprecationWarning,
                    stacklevel=2,
                )
        if envs or "envs" in data:
            data["envs"] = envs
        return data

    @model_validator(mode="before")
    @classmethod
    def _register_plugin_families(cls, data: Any) -> Any:
        """Families named as ``package.module:Class`` in collect / eval are registered before
        ``envs`` is read, so ``envs.<their name>`` is typed by their own config class."""
        if not isinstance(data, dict):
            return data
        for stage, key in PLUGIN_FAMILY_KEYS:
            section = data.get(stage)
            families = section.get(key) if isinstance(section, dict) else None
            for name in families if isinstance(families, list) else []:
                if isinstance(name, str) and is_import_path(name):
                    try:
                        register_family(name)
                    except ValueError as e:
                        raise ValueError(f"{stage}.{key}: {e}") from None
        return data

    @model_validator(mode="after")
    def _propagate_shared(self) -> PipelineConfig:
        """Stages that did not name a model use the pipeline's; eval's client reads the key
        serve requires."""
        for section in (self.process, self.train):
            if "model" not in section.model_fields_set:
                section.model = self.model
        # eval talks to this pipeline's own served model: it sends the key serve requires
        policy = self.eval.policy
        if (
            isinstance(policy, OpenAIConfig)
            and "api_key_env" not in policy.model_fields_set
            and self.serve.api_key_env
        ):
            policy.api_key_env = self.serve.api_key_env
        return self


def _pop_path(data: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or path[-1] not in node:
        return False, None
    return True, node.pop(path[-1])


def _same_settings(family: str, a: Any, b: Any) -> bool:
    """Whether two settings of ``family`` mean the same (compared as validated, if they are)."""
    config_cls = getattr(EnvsConfig.model_fields.get(family), "annotation", None)
    try:
        return config_cls.model_validate(a or {}) == config_cls.model_validate(b or {})
    except Exception:
        return a == b


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
        path, model = _resolve(err["loc"][:-1]) if err["loc"] else ([], PipelineConfig)
        shown = [*path, str(err["loc"][-1])] if err["loc"] else []
        field = ".".join(shown) or "<root>"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = sorted(getattr(model, "model_fields", {}))
            message = f"unknown field; allowed here: {', '.join(allowed)}"
            if not allowed:  # a plug-in's own settings: the model is the plug-in's
                message = "unknown field (see the plug-in's options)"
        got = err.get("input")
        got_text = "" if err["type"] == "extra_forbidden" else f" (got {got!r})"
        lines.append(f"  {field}: {message}{got_text}")
    return "\n".join(lines)


def _allowed_fields(loc: tuple) -> list[str]:
    """The field names allowed next to the last part of ``loc`` (an error's location)."""
    _, model = _resolve(loc[:-1])
    return sorted(getattr(model, "model_fields", {}))


def _resolve(loc: tuple) -> tuple[list[str], Any]:
    """Walk ``loc`` from PipelineConfig: the path as the config spells it (a union's tag,
    which pydantic puts in the location, left out) and the model it ends at (None where it
    leaves the models)."""
    shown: list[str] = []
    node: Any = PipelineConfig
    for part in loc:
        members = _members(node)
        if members is not None:  # a union: ``part`` names the member (tag or class name)
            chosen = _member_for(members, part)
            if chosen is not None:
                node = chosen
                continue
            node = None
        shown.append(str(part))
        if isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = _unwrap(node.model_fields[part].annotation)
        elif typing.get_origin(node) is dict:
            node = _unwrap(typing.get_args(node)[1])
        elif typing.get_origin(node) is list and isinstance(part, int):
            node = _unwrap(typing.get_args(node)[0])
        else:
            node = None
    members = _members(node)
    if members is not None and len(members) == 1:
        node = members[0]
    return shown, node


def _unwrap(annotation: Any) -> Any:
    """Drop ``Annotated`` and ``None`` from an annotation."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return typing.Union[tuple(_unwrap(a) for a in args)]  # noqa: UP007
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _members(node: Any) -> list[type[BaseModel]] | None:
    """The models of a union of models, else None."""
    if not _is_union(node):
        return None
    args = [a for a in typing.get_args(node) if isinstance(a, type) and issubclass(a, BaseModel)]
    return args or None


def _member_for(members: list[type[BaseModel]], part: Any) -> type[BaseModel] | None:
    for member in members:
        backend = member.model_fields.get("backend")
        tagged = getattr(member, "union_tag", None) == part
        if tagged or (backend is not None and backend.default == part) or member.__name__ == part:
            return member
    return None


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


def _reference_section(
    model: type[BaseModel],
    prefix: str,
    lines: list[str],
    title: str | None = None,
    seen: set[tuple[str, type]] | None = None,
) -> None:
    """``model``'s fields as one table, then its nested models' tables (a union of configs,
    e.g. a policy: one table per member; a nested model that two members share, e.g. their
    ``params``, once)."""
    seen = set() if seen is None else seen
    nested: list[tuple[str, type[BaseModel], str | None]] = []
    rows = []
    for name, field in model.model_fields.items():
        annotation = _unwrap(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((f"{prefix}{name}", annotation, None))
            continue
        members = _members(annotation)
        if members is not None and len(members) > 1:
            # a union of configs (a policy): one row, then one section per member
            default = field.get_default(call_default_factory=True)
            tags = [_tag(m) for m in members]
            type_text = "backend: " + " / ".join(t.removeprefix("backend: ") for t in tags)
            if typing.get_origin(field.annotation) is not typing.Annotated and any(
                a is type(None) for a in typing.get_args(field.annotation)
            ):
                type_text += " / None"
            default_text = default if default is None else _tag(type(default))
            if isinstance(default_text, str):
                default_text = default_text.removeprefix("backend: ")
            rows.append(
                f"| `{prefix}{name}` | `{type_text}` | `{default_text!r}` | "
                f"{(field.description or '').replace('|', '/')} |"
            )
            for member, tag in zip(members, tags, strict=True):
                nested.append((f"{prefix}{name}", member, f"{prefix}{name} ({tag})"))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(
            f"| `{prefix}{name}` | `{_type_name(field.annotation)}` | `{default!r}` | "
            f"{(field.description or '').replace('|', '/')} |"
        )
    if rows:
        title = title or prefix.rstrip(".") or "top level"
        lines += [
            f"**{title}**",
            "",
            "| field | type | default | meaning |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    for name, sub, sub_title in nested:
        if (name, sub) in seen:
            continue
        seen.add((name, sub))
        _reference_section(sub, f"{name}.", lines, sub_title, seen)


def _tag(member: type[BaseModel]) -> str:
    if (tag := getattr(member, "union_tag", None)) is not None:
        return f"backend: <{tag}>"
    backend = member.model_fields.get("backend")
    return f"backend: {backend.default}" if backend is not None else member.__name__


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return (text or str(annotation)).replace("typing.", "").replace("|", "/")
