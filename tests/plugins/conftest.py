"""Each plug-in test leaves the registries as it found them: a family one test registers
(in this process and in ``AGENTRAY_PLUGINS``, which child processes inherit) is not known
to the next."""

from __future__ import annotations

import os

import pytest

from agentray.envs.registry import ENVS
from agentray.policies.registry import BACKENDS
from agentray.registry import PLUGINS_ENV


@pytest.fixture(autouse=True)
def _registries_restored():
    saved = os.environ.get(PLUGINS_ENV)
    yield
    if saved is None:
        os.environ.pop(PLUGINS_ENV, None)
    else:
        os.environ[PLUGINS_ENV] = saved
    ENVS.forget_plugins()
    BACKENDS.forget_plugins()
