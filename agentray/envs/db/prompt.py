"""DBBench's instruction and the 1-shot demonstration."""

from __future__ import annotations

from agentray.types import Message

# AgentBench DBBench's prompt (src/server/tasks/dbbench/__init__.py, v0.2), verbatim.
INSTRUCTION = """I will ask you a question, then you should help me operate a MySQL database with SQL to answer the question.
You have to explain the problem and your solution to me and write down your thoughts.
After thinking and explaining thoroughly, every round you can choose to operate or to answer.
your operation should be like this:
Action: Operation
```sql
SELECT * FROM table WHERE condition;
```
You MUST put SQL in markdown format without any other comments. Your SQL should be in one line.
Every time you can only execute one SQL statement. I will only execute the statement in the first SQL code block. Every time you write a SQL, I will execute it for you and give you the output.
If you are done operating, and you want to commit your final answer, then write down:
Action: Answer
Final Answer: ["ANSWER1", "ANSWER2", ...]
DO NOT write this pattern unless you are sure about your answer. I expect an accurate and correct answer.
Your answer should be accurate. Your answer must be exactly the same as the correct answer.
If the question is about modifying the database, then after done operation, your answer field can be anything.
If your response cannot match any pattern I mentioned earlier, you will be judged as FAIL immediately.
Your input will be raw MySQL response, you have to deal with it by yourself."""


# A 1-shot demonstration on a table no generated task uses.
DEMO: list[Message] = [
    {
        "role": "user",
        "content": "What is the average population of the cities located in Norway?\n"
        "The name of this table is nordic_cities, and the headers of this table are "
        "city,country,population.",
    },
    {
        "role": "assistant",
        "content": "To find the average population of the cities in Norway, I need the mean of "
        "the population column over the rows whose country is Norway.\nAction: Operation\n"
        "```sql\nSELECT AVG(`population`) FROM `nordic_cities` WHERE `country` = 'Norway';\n```",
        "loss": False,
    },
    {"role": "user", "content": "[(354500.0,)]"},
    {
        "role": "assistant",
        "content": "The average population of the cities in Norway is 354500.0.\n"
        'Action: Answer\nFinal Answer: ["354500.0"]',
        "loss": False,
    },
]
