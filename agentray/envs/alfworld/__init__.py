"""The Household family (ALFWorld) in AgentBench's ALFWorld format, on a pure-Python world.

Each task is one generated room (kitchen, living room, bedroom or bathroom): receptacles,
some openable (cabinet, drawer, fridge, microwave, safe), some appliances (sinkbasin cleans,
microwave heats, fridge cools, a desklamp or floorlamp lights), and numbered objects placed
where they are usually found, plus one goal of ALFWorld's six task types. The world speaks
ALFWorld's command grammar (``go to {recep}``, ``take {obj} from {recep}``,
``put {obj} in/on {recep}``, ``open``/``close``, ``clean``/``heat``/``cool {obj} with
{recep}``, ``use {lamp}``, ``examine``, ``inventory``, ``look``) and answers in ALFWorld's
TextWorld phrasing; a command that is not admissible gets ``Nothing happens.``. The real
``alfworld`` engine is not needed: the state is a few dicts, so reset and step take
microseconds.

AgentBench's ALFWorld loop (src/server/tasks/alfworld/task.py, v0.2), reproduced here:

- the agent answers ``THOUGHT: ...`` and/or ``ACTION: ...``; the first ``ACTION:`` line is
  the command (lower-cased). A reply without one, or with an empty one, ends the episode as
  AGENT_INVALID_ACTION (reward 0).
- a command that is not admissible is snapped to the admissible command with the highest
  sentence BLEU (NLTK's 4-gram BLEU, smoothing method 4) when that BLEU exceeds 0.01, else
  passed on as typed (and then does nothing) (``fuzzy_match``).
- the ``You arrive at loc N.`` prefix of an arrival is cut from the observation.
- the same reply three times in a row (after more than three turns) ends the episode as
  AGENT_INVALID_ACTION (``fail_on_repeat``).
- reward 1 when the goal condition holds (the episode ends COMPLETED), 0 otherwise; after
  ``max_rounds`` (35) turns without success, TASK_LIMIT_REACHED.
- the prompt: the instruction, ``OK. ...``, a 1-shot demonstration of the same task type
  (``Here is one example.`` ... ``ACTION: Task succeeded.``), then ``Here is your task.``
  and the room. AgentBench appends `` AVAILABLE ACTIONS: ...`` to the newest turn and cuts
  it from the older ones; a conversation that only grows cannot do that, so by default the
  list is left out (the form AgentInstruct's ALFWorld trajectories keep) and
  ``show_available_actions`` appends it to every observation.

The scripted expert searches the receptacles where the object is usually found (opening
closed ones), takes it, cleans / heats / cools it or carries it to the lamp, and places it.
"""

from agentray.envs.alfworld.config import AlfWorldConfig
from agentray.envs.alfworld.env import AlfWorldEnv

__all__ = ["AlfWorldConfig", "AlfWorldEnv"]
