"""The MiniWoB++ family (held-out): real MiniWoB++ web tasks in headless Chromium, as text.

MiniWoB++ (the `miniwob` package: its HTML tasks, driven through Selenium + ChromeDriver)
poses small web-interaction tasks: click a button, a link, type into a field, ... A task
here is one task type (``subdomain``) and one MiniWoB++ seed: the page generates the same
problem (utterance and DOM) for the same seed, so a task's first observation and the
expert's plan are recorded once when the tasks are built and replayed exactly later.
Train and test tasks take disjoint seeds (``task_seed``; problem texts are unique).

The loop, in the AgentBench layout the other families use:

- the observation is text: the utterance, then the page's DOM elements one a line,
  indented under their parent: ``[ref] tag "text" id=... value="..."`` (text nodes are
  ``[-n] text "..."``).
- the agent answers ``Thought: ...`` and/or ``Action: click(<ref>)`` or
  ``Action: type(<ref>, "<text>")``; the first ``Action:`` line counts. A reply without a
  parseable action ends the episode as AGENT_INVALID_ACTION (reward 0); a ref that is not
  on the page gets ``There is no element [<ref>].`` and the episode goes on.
- MiniWoB++ ends the episode itself with a raw reward in [-1, 1] (without its time
  penalty); reward = 1.0 when it is positive (success), else 0.0, status COMPLETED;
  ``max_rounds`` turns without an end: TASK_LIMIT_REACHED. MiniWoB++'s own 10 s episode
  clock is stretched to ``episode_time_limit_s`` so a slow policy is not timed out.

The scripted expert reads the utterance's fields and the DOM (supported for
``EXPERT_TYPES``). Cost: one browser (chromium + chromedriver, ~0.8 s to start) per task
type and concurrent episode, lent from a per-process free list and reused; reset ~0.1 s,
step ~0.05 s.
"""

from agentray.envs.miniwob.config import MiniWoBConfig
from agentray.envs.miniwob.env import MiniWoBEnv

__all__ = ["MiniWoBConfig", "MiniWoBEnv"]
