"""The instruction (the simulator's command grammar) and fixed replies."""

from __future__ import annotations

import re

INSTRUCTION = """You are a helpful assistant to do some scientific experiments in an environment.
In the environment, there are several rooms: kitchen, foundry, workshop, bathroom, outside, living room, bedroom, greenhouse, art studio, hallway.
You should explore the environment and find the items you need to complete the experiment.

The available actions are:
open OBJ: open a container
close OBJ: close a container
activate OBJ: activate a device
deactivate OBJ: deactivate a device
connect OBJ to OBJ: connect electrical components
disconnect OBJ: disconnect electrical components
use OBJ [on OBJ]: use a device/item
look around: describe the current room
look at OBJ: describe an object in detail
look in OBJ: describe a container's contents
read OBJ: read a note or book
move OBJ to OBJ: move an object to a container
pick up OBJ: move an object to the inventory
put down OBJ: drop an inventory item
pour OBJ in OBJ: pour a liquid into a container
dunk OBJ in OBJ: dunk a container into a liquid
mix OBJ: chemically mix a container
go to LOC: move to a new location
eat OBJ: eat a food
flush OBJ: flush a toilet
focus on OBJ: signal intent on a task object
wait: take no action for 10 iterations
wait1: take no action for 1 iteration
task: describe the current task
inventory: list your inventory
When a command is ambiguous, the environment lists the options: answer with the number of the one you mean.

Your response should use the following format:

Thought: <your thoughts>
Action: <your next action>"""


OK_REPLY = "OK. I'll follow your instructions and try my best to solve the task."


DEMO_DONE = "The task is completed (score 100/100)."


ACTION_LINE = re.compile(r"^[ \t]*action[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
