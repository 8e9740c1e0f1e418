"""The ``envs:`` section: every registered env family's settings, typed by the family's own
config class (``env_class(name).config_cls``), so a typo fails when the config loads.

collect, eval, instruct and the expert all play the tasks these settings generate; the
model is built from the family registry (a new family gets its field by registering).
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from agentray.envs.base import FamilyConfig
from agentray.envs.registry import ENVS, env_class, family_names, register_family
from agentray.registry import is_import_path, relocated_errors


class _PluginSections(BaseModel):
    """Sections for plug-in families registered after the model was built (a ``module:Class``
    the run's config names), each typed by its family's config class when the config loads."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _typed_plugin_sections(self) -> _PluginSections:
        """Each extra section must be a known plug-in family's, typed by its config class;
        errors keep their place (``envs.<family>.<field>``) like the built-in sections'."""
        extra = self.__pydantic_extra__ or {}
        errors: list[dict[str, Any]] = []
        for name, value in extra.items():
            if name not in ENVS:
                errors.append({"type": "extra_forbidden", "loc": (name,), "input": value})
                continue
            try:
                extra[name] = env_class(name).config_cls.model_validate(value or {})
            except ValidationError as e:
                errors += relocated_errors(e.errors(), name)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


def build_envs_config() -> type[BaseModel]:
    """A pydantic model with one field per registered family, typed as its config class."""
    fields: dict[str, Any] = {}
    for name in ENVS.names():
        try:
            config_cls = env_class(name).config_cls
        except KeyError as e:  # a broken plug-in fails where it is used, not every command
            warnings.warn(f"{e.args[0]}; its envs section is left out", stacklevel=2)
            continue
        doc = (config_cls.__doc__ or "").strip().splitlines()
        fields[name] = (
            config_cls,
            Field(
                default_factory=config_cls,
                description=f"the {name} family's settings" + (f": {doc[0]}" if doc else ""),
            ),
        )
    return create_model(
        "EnvsConfig",
        __base__=_PluginSections,
        __doc__="Per-family settings, one section per registered env family.",
        **fields,
    )


EnvsConfig = build_envs_config()


def as_envs(envs: BaseModel | dict[str, Any] | None) -> BaseModel:
    """An ``EnvsConfig`` from itself, a dict of per-family settings (partial), or None."""
    if isinstance(envs, EnvsConfig):
        return envs
    if isinstance(envs, BaseModel):
        envs = envs.model_dump()
    return EnvsConfig.model_validate(envs or {})


def family_config(envs: BaseModel | dict[str, Any] | None, family: str) -> FamilyConfig | None:
    """``family``'s settings in ``envs`` (None for a ``module:Class`` family: its defaults)."""
    return getattr(as_envs(envs), family, None)


def family_config_dicts(envs: BaseModel | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every family's settings as plain data (what crosses Ray to the actors)."""
    return as_envs(envs).model_dump(mode="json")


def played_envs(
    envs: BaseModel | dict[str, Any] | None, families: list[str]
) -> dict[str, dict[str, Any] | None]:
    """The settings of ``families`` (what a stage's manifest records of ``envs``)."""
    configs = family_config_dicts(envs)
    return {family: configs.get(family) for family in families}


def check_families(value: list[str], held_out: bool = True) -> list[str]:
    """``value`` with each ``package.module:Class`` registered and replaced by its family
    name; every other name must be a known family (held-out ones and plug-ins too when
    ``held_out``)."""
    known = family_names(held_out=held_out)
    unknown = [f for f in value if f not in known and not is_import_path(f)]
    if unknown:
        raise ValueError(
            f"unknown env families {unknown}; allowed: {known} "
            "(or a 'package.module:Class' naming an Env subclass)"
        )
    return [register_family(f) if is_import_path(f) else f for f in value]
