"""Test and benchmark helpers that ship with agentray (no test framework needed to use them).

- ``expert_endpoint``: an OpenAI-compatible HTTP server that answers with the scripted
  expert, with latency, error and stall injection.
- ``instruct_teacher``: the stand-in teacher behind that endpoint for ``agentray instruct``
  prompts (procedural proposals plus named faults).
"""
