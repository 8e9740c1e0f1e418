"""The ScienceWorld family (held-out): the real ScienceWorld simulator, in AgentBench's style.

ScienceWorld (Wang et al., 2022; the `scienceworld` package, a Scala simulator behind a JVM
that py4j talks to) poses elementary-science tasks (boil water, test conductivity, find an
animal, ...) in a text world of ten rooms. Each task type has numbered variations, split by
ScienceWorld itself into train / dev / test; this family takes its train tasks from the
train variations and its test tasks from the test variations, ``n_train`` / ``n_test`` of
them spread round-robin over ``task_types``. The 1-shot demonstration of a task type is its
first dev variation (so it is neither a train nor a test task).

The loop, in the ReAct / AgentBench layout the other families use:

- the prompt: the instruction (the simulator's command grammar), ``OK. ...``, the 1-shot
  demonstration (``Here is one example.`` + its gold path, ``loss: False``), then
  ``Here is your task.`` with the task description and the first ``look around``.
- the agent answers ``Thought: ...`` and/or ``Action: <command>``; the first ``Action:``
  line is the command. A reply without one, or with an empty one, ends the episode as
  AGENT_INVALID_ACTION (reward 0). A command the simulator does not know gets its own answer
  (``No known action matches that input.``) and the episode goes on.
- reward = ScienceWorld's score / 100 (a negative score, a failed task, counts 0). The
  episode ends COMPLETED when the simulator reports the task done (score 100) or failed
  (score < 0), and TASK_LIMIT_REACHED after ``max_rounds`` turns, with the score reached so
  far as its reward (ScienceWorld's metric is the score, partial credit included).

The scripted expert replays the simulator's own gold action sequence, stored in the task's
payload when the tasks are built, so the expert needs no simulator.

Cost: one simulator is one JVM (~1 GB with the default ``-Xmx1g``, 2–5 s to start). An env
borrows one for its episode from a per-process free list and gives it back in ``close()``,
so an EnvPool starts at most as many JVMs as it runs ScienceWorld episodes at once and
reuses them across episodes; a reset (load + look around) takes 0.3–2.4 s (mean 0.9 s on a
busy 2-core machine), a step ~10 ms.
Building the tasks runs each variation once (gold path included) and is cached on disk.
"""

from agentray.envs.scienceworld.config import ScienceWorldConfig
from agentray.envs.scienceworld.env import ScienceWorldEnv

__all__ = ["ScienceWorldConfig", "ScienceWorldEnv"]
