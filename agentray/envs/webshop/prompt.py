"""AgentBench's WebShop instruction and the 1-shot demonstration."""

from __future__ import annotations

from agentray.types import Message

# AgentBench's WebShop prompt (src/server/tasks/webshop/__init__.py, v0.2), verbatim.
INSTRUCTION = """
You are web shopping.
I will give you instructions about what to do.
You have to follow the instructions.
Every round I will give you an observation and a list of available actions, \
you have to respond an action based on the state and instruction.
You can use search action if search is available.
You can click one of the buttons in clickables.
An action should be of the following structure:
search[keywords]
click[value]
If the action is not valid, perform nothing.
Keywords in search are up to you, but the value in click must be a value in the list of available actions.
Remember that your keywords in search should be carefully designed.
Your response should use the following format:

Thought:
I think ...

Action:
click[something]
"""


_DEMO_INSTRUCTION = (
    "i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price lower than 100.00 dollars"
)


_DEMO_ITEM = (
    f'Observation:\n"Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] Back to Search [SEP] < Prev '
    "[SEP] size [SEP] 2.5 fl oz [SEP] 6.76 fl oz (pack of 1) [SEP] L'eau D'issey By Issey "
    "Miyake for MenEau De Toilette Spray, 6.7 Fl Oz Bottle [SEP] Price: $64.98 [SEP] Rating: "
    'N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"\n\nAvailable Actions:\n'
    '{"has_search_bar": false, "clickables": ["...", "...", "...", "...", "...", "...", "...", '
    '"..."]}'
)


# AgentBench's one-shot (same file), verbatim: its turns after the opening "Ok.".
ONE_SHOT: list[Message] = [
    {
        "role": "user",
        "content": f'Observation:\n"WebShop [SEP] Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] '
        'Search"\n\nAvailable Actions:\n{"has_search_bar": true, "clickables": ["..."]}',
    },
    {
        "role": "assistant",
        "content": "Thought:\nI think I should use the search bar to look for the product I "
        "need.\n\nAction:\nsearch[l'eau d'issey 6.76 fl oz bottle price < 100.00]",
        "loss": False,
    },
    {
        "role": "user",
        "content": f'Observation:\n"Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] Back to Search '
        "[SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B000VOHH8I [SEP] L'eau D'issey By "
        "Issey Miyake for MenEau De Toilette Spray, 6.7 Fl Oz Bottle [SEP] $64.98 [SEP] "
        "B000MJZOPK [SEP] L'eau d'Issey by Issey Miyake for Women 3.3 oz Eau de Toilette Spray "
        "[SEP] $49.98 [SEP] B0012S249E [SEP] L'eau D'issey By Issey Miyake For Women. Shower "
        "Cream 6.7-Ounces [SEP] $31.36 [SEP] B01H8PGKZS [SEP] L'eau D'Issey FOR MEN by Issey "
        "Miyake - 6.7 oz EDT Spray [SEP] $67.97 [SEP] B00G3C8FHE [SEP] L'Eau d'Issey pour Homme "
        "- Eau de Toilette 4.2 fl oz [SEP] $51.25 [SEP] B000R94HRG [SEP] Issey Miyake L'Eau "
        "D'Issey Pour Homme Eau De Toilette Natural Spray [SEP] $44.99 [SEP] B000C214CO [SEP] "
        "Issey Miyake L'eau D'issey Eau de Toilette Spray for Men, 4.2 Fl Oz [SEP] $53.99 [SEP] "
        "B0018SBRDC [SEP] Issey Miyake L'eau d'Issey for Women EDT, White, 0.84 Fl Oz [SEP] "
        "$27.04 [SEP] B000XEAZ9Y [SEP] L'eau De Issey By Issey Miyake For Men. Eau De Toilette "
        "Spray 6.7 Fl Oz [SEP] $67.08 [SEP] B079HZR2RX [SEP] L'eau d'Issey Pure by Issey Miyake "
        'for Women 3.0 oz Nectar de Parfum Spray [SEP] $71.49"\n\nAvailable Actions:\n'
        '{"has_search_bar": false, "clickables": ["...", "...", "...", "...", "...", "...", '
        '"...", "...", "...", "...", "...", "..."]}',
    },
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the product I need, which is "
        "B000VOHH8I.\n\nAction:\nclick[B000VOHH8I]",
        "loss": False,
    },
    {"role": "user", "content": _DEMO_ITEM},
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the '6.76 fl oz (pack of 1)' option to "
        "select the size I need.\n\nAction:\nclick[6.76 fl oz (pack of 1)]",
        "loss": False,
    },
    {"role": "user", "content": _DEMO_ITEM},
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the 'Buy Now' button to purchase the "
        "product.\n\nAction:\nclick[Buy Now]",
        "loss": False,
    },
]
