"""What a good timeline page is (API.md), for the load tools: Locust and the experiments.

Kept apart from the locustfile: importing locust monkey-patches the whole process (gevent).
"""

from __future__ import annotations

from typing import Any

ITEM_FIELDS = {"post_id", "author_id", "author_handle", "body", "created_at"}


def page_problem(status: int, answer: Any) -> str | None:
    """Why a timeline answer is not a good page, or None when it is."""
    if status != 200:
        return f"status {status}"
    if not isinstance(answer, dict) or set(answer) != {"items", "next_cursor"}:
        return "not a page object"
    items = answer["items"]
    if not isinstance(items, list) or not items:
        return "empty timeline"
    if not all(isinstance(i, dict) and set(i) == ITEM_FIELDS for i in items):
        return "malformed item"
    keys = [(i["created_at"], i["post_id"]) for i in items]
    if keys != sorted(keys, reverse=True) or len(set(keys)) != len(keys):
        return "items not newest first, or repeated"
    return None
