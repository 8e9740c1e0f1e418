from agentray.model.tiny import TINY_MODEL, build_tiny_model, model_source, resolve_model

__all__ = ["TINY_MODEL", "build_tiny_model", "model_source", "resolve_model"]
