"""The Mind2Web family: multi-step web tasks over generated HTML snapshots, MindAct-style.

Each task is one goal on one generated website (flight search, shopping, restaurant booking,
car rental, hotels, movie tickets, job search) and a gold action sequence of 3-8 steps over a
sequence of page snapshots. At every step the agent sees what MindAct's multiple-choice
prompt shows (Mind2Web ``src/action_prediction``, AgentBench's Mind2Web task): the cleaned
page (the candidate elements carry ``id=k``), the task, the previous actions and the choices
``A. None of the above`` then ``B.``... (the gold element shuffled among distractors of the
same page). It answers ``Answer: C.\nAction: TYPE\nValue: New York`` (a ``Thought:`` line
before it is allowed; ``Value`` only for TYPE and SELECT).

Scoring is Mind2Web's offline evaluation, as AgentBench computes it: per step, element
accuracy (the chosen letter is the gold element) and operation F1 (token-set F1 of
``"OP value"`` against the gold); a step succeeds when the element is right and the F1 is 1.
The episode follows the gold trajectory whatever the agent answered (teacher forcing: the
next page and the previous actions are the gold ones), so every step is scored, and the
reward is the step success rate. A reply with no ``Answer: <letter>`` counts, as AgentBench's
parser does (it defaults to "A"), as a failed step and the episode goes on; AgentBench never
ends a Mind2Web sample early, so ``max_invalid_streak`` is 0 (off) by default, and a positive
value ends the episode with AGENT_INVALID_ACTION after that many such replies in a row.
"""

from agentray.envs.mind2web.config import Mind2WebConfig
from agentray.envs.mind2web.env import Mind2WebEnv

__all__ = ["Mind2WebConfig", "Mind2WebEnv"]
