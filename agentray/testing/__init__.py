"""Test and benchmark helpers that ship with agentray (no test framework needed to use them).

- ``expert_endpoint``: an OpenAI-compatible HTTP server that answers with the scripted
  expert, with latency, error and stall injection.
- ``instruct_teacher``: the stand-in teacher behind that endpoint for ``agentray instruct``
  prompts (procedural proposals plus named faults).
- ``benchmark_endpoint``: an endpoint that answers the general suites from their gold data
  (a known-good and a known-bad answer source for scoring tests).
- ``conversation_expert``: the scripted expert for a plain conversation (its task found
  from the text), behind both endpoints.
- ``per_process_env``, ``expertless_env``: test-only env families (tasks that differ per
  process; no scripted expert).
- ``free_port``: a TCP port nobody listens on now, for a server a test or benchmark starts.
"""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
