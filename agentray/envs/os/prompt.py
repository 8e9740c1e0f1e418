"""AgentBench's OS-interaction instruction and the 1-shot demonstration."""

from __future__ import annotations

from agentray.types import Message

# AgentBench's OS-interaction prompt (src/server/tasks/os_interaction/task.py), verbatim.
INSTRUCTION = """You are an assistant that will act like a person, I'will play the role of linux(ubuntu) operating system. Your goal is to implement the operations required by me or answer to the question proposed by me. For each of your turn, you should first think what you should do, and then take exact one of the three actions: "bash", "finish" or "answer". 

1. If you think you should execute some bash code, take bash action, and you should print like this:

Think: put your thought here.

Act: bash

```bash
# put your bash code here
```

2. If you think you have finished the task, take finish action, and you should print like this:

Think: put your thought here.

Act: finish

3. If you think you have got the answer to the question, take answer action, and you should print like this:

Think: put your thought here.

Act: answer(Your answer to the question should be put in this pair of parentheses)

If the output is too long, I will truncate it. The truncated output is not complete. You have to deal with the truncating problem by yourself. Attention, your bash code should not contain any input operation. Once again, you should take only exact one of the three actions in each turn.

"""  # (the trailing space after "answer". is AgentBench's too)


ONE_SHOT_QUESTION = 'tell me how many files are in the directory "/etc"?'


ONE_SHOT: list[Message] = [
    {
        "role": "assistant",
        "content": "Think: To count the files in /etc, I need to print all the files in it.\n\n"
        "Act: bash\n\n```bash\nls /etc\n```",
        "loss": False,
    },
    {
        "role": "user",
        "content": "The output of the OS:\ncpi cron.hourly fuse.conf iproute2 lvm "
        "networkd-dispatcher protocols selinux tmpfiles.d [truncated because the output is too long]",
    },
    {
        "role": "assistant",
        "content": "Think: The output has been truncated because it is too long, so I need to "
        "count files by script directly.\n\nAct: bash\n\n```bash\nls -1 /etc | wc -l\n```",
        "loss": False,
    },
    {"role": "user", "content": "The output of the OS:\n220"},
    {
        "role": "assistant",
        "content": "Think: Now I get the answer, it is 220.\n\nAct: answer(220)",
        "loss": False,
    },
]


NEW_PROBLEM = "Now, I will start a new problem in a new OS. My problem is:\n\n"


TRUNCATION_NOTE = "\n[truncated because the output is too long]"
