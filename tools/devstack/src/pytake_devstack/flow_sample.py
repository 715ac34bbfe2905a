"""A sample chatbot flow: reply buttons, a name, an e-mail, then a hand-off.

One definition for automation's tests, the end-to-end test and the demo, so the three
show the same four steps.
"""

from __future__ import annotations

from typing import Any

QUESTION = "Hi! What is it about?"
HANDOFF_MESSAGE = "An agent will be with you shortly."
NOTE = "Chatbot summary"


def triage_flow(department_id: str, prompt: str = QUESTION) -> dict[str, Any]:
    """Four steps (``POST /v1/automation/flows`` ``definition``): the topic by reply
    buttons, the name into a variable, the e-mail (validated, reprompted) into the
    contact's ``email`` attribute, a hand-off to ``department_id`` with a note of the
    answers. "stop" ends it."""
    return {
        "start": "topic",
        "stop_words": ["stop"],
        "nodes": [
            {
                "id": "topic",
                "type": "ask",
                "prompt": {
                    "kind": "buttons",
                    "body": prompt,
                    "buttons": [
                        {"id": "sales", "title": "Sales"},
                        {"id": "support", "title": "Support"},
                    ],
                },
                "validate": {"kind": "option"},
                "label": "Topic",
                "next": "name",
            },
            {
                "id": "name",
                "type": "ask",
                "prompt": {"kind": "text", "text": "Your name?"},
                "store": {"target": "variable", "key": "name"},
                "label": "Name",
                "next": "email",
            },
            {
                "id": "email",
                "type": "ask",
                "prompt": {"kind": "text", "text": "Thanks {{name}}. Your e-mail?"},
                "validate": {"kind": "email"},
                "store": {"target": "attribute", "key": "email"},
                "label": "E-mail",
                "reprompt": "That is not an e-mail address.",
                "next": "human",
            },
            {
                "id": "human",
                "type": "handoff",
                "department_id": department_id,
                "message": HANDOFF_MESSAGE,
                "note": NOTE,
            },
        ],
    }
