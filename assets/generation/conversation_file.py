"""A conversation file in the app's format, checked against the app's schema before it is stored.

The app opens `<owner>/<conversation_id>/conversation.json` from its storage bucket and validates
it (`contracts/conversation-file.schema.json` holds that schema), so a file is built the way the
app reads it: `dataset_metadata`, `consultant_profile`, and one training pair per assistant turn
(its user input, the history before it, the reply as `target_response`), with the emotional
arc's start and end in each pair's `emotional_context`, where the app's metadata extraction
finds the conversation's starting and ending emotion.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA_PATH = files("contracts") / "conversation-file.schema.json"
CONSULTANT_PATH = files("resources") / "prompts" / "consultant_profile.json"
FILE_NAME = "conversation.json"
VERSION = "1.0.0"


class InvalidConversationFile(ValueError):
    """The document is not what the app's schema accepts; the message is the validator's."""


def conversation_folder(owner: object, conversation_id: object) -> str:
    """The folder (key prefix) of one conversation: its file, and a model's raw response beside it."""
    return f"{owner}/{conversation_id}"


def file_key(owner: object, conversation_id: object) -> str:
    """Where the app looks for a conversation's file, relative to the store (its `file_path`)."""
    return f"{conversation_folder(owner, conversation_id)}/{FILE_NAME}"


@cache
def consultant_profile() -> dict:
    """The coach the conversations are written for (a data file: edit it to match the app's)."""
    return json.loads(CONSULTANT_PATH.read_text(encoding="utf-8"))


def conversation_name(persona: Mapping, arc: Mapping, topic: Mapping) -> str:
    """The dataset name the file and the row's `conversation_name` share."""
    return " · ".join(str(row.get("name") or row.get(key)) for row, key in
                      ((persona, "persona_key"), (arc, "arc_key"), (topic, "topic_key")))


def conversation_document(
    *,
    conversation_id: str,
    persona: Mapping[str, Any],
    arc: Mapping[str, Any],
    topic: Mapping[str, Any],
    tier: str,
    turns: list[dict[str, str]],
    generator: str,
    quality_score: float | None = None,
) -> dict:
    """The file of one conversation: turns alternate user/assistant, user first, as the generators give them.

    A turn may carry the persona's `emotion` (user turns) and the coach's `strategy` (assistant turns).
    """
    profile = consultant_profile()
    name = conversation_name(persona, arc, topic)
    start, end = arc.get("starting_emotion"), arc.get("ending_emotion")
    metadata = {
        "persona_key": persona.get("persona_key"), "persona_name": persona.get("name"),
        "persona_archetype": persona.get("archetype"), "emotional_arc": arc.get("name"),
        "emotional_arc_key": arc.get("arc_key"), "training_topic": topic.get("name"),
        "topic_key": topic.get("topic_key"), "tier": tier,
    }
    system_prompt = (f"You are {profile['name']} ({profile['business']}). "
                     f"Tone: {profile.get('communication_style', {}).get('tone', 'warm')}. "
                     "Respond to the person's emotions first, then educate, one step at a time.")
    pairs, history = [], []
    for index in range(0, len(turns) - 1, 2):
        user, reply = turns[index], turns[index + 1]
        number = index // 2 + 1
        emotional = {"starting_emotion": start, "ending_emotion": end}
        if user.get("emotion"):
            emotional["detected_emotions"] = {"primary": user["emotion"]}
        strategy = reply.get("strategy") or arc.get("arc_strategy")
        pairs.append({
            "id": f"{conversation_id}_turn{number}",
            "conversation_id": conversation_id,
            "turn_number": number,
            "conversation_metadata": metadata,
            "system_prompt": system_prompt,
            "conversation_history": list(history),
            "current_user_input": user["content"],
            "emotional_context": {k: v for k, v in emotional.items() if v is not None},
            **({"response_strategy": {"primary_strategy": strategy}} if strategy else {}),
            "target_response": reply["content"],
            "training_metadata": {"generator": generator, "quality_tier": tier,
                                  **({"quality_score": quality_score} if quality_score is not None else {})},
        })
        history += [{"role": t["role"], "content": t["content"]} for t in (user, reply)]
    return {
        "dataset_metadata": {
            "dataset_name": name,
            "version": VERSION,
            "created_date": dt.date.today().isoformat(),
            "vertical": "financial_wellness",
            "consultant_persona": f"{profile['name']} - {profile['business']}",
            "target_use": "training conversations for an emotionally intelligent financial coach",
            "conversation_source": f"bulkgen ({generator} generator)",
            "quality_tier": tier,
            "total_conversations": 1,
            "total_turns": len(turns),
            "notes": f"{arc.get('name') or arc.get('arc_key')}: {start} to {end}",
        },
        "consultant_profile": profile,
        "training_pairs": pairs,
    }


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_document(document: object) -> None:
    """Raise InvalidConversationFile with the validator's own message (and where) when the app would refuse it."""
    error = best_match(_validator().iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        raise InvalidConversationFile(f"conversation file invalid at {where}: {error.message}")
