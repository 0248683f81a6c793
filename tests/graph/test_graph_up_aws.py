"""The story of test_graph_up.py on kinesalite and dynalite: the graph's leases in DynamoDB."""

from __future__ import annotations

import pytest

from tests.graph.test_graph_up import aws_env, story, up

__all__ = ["aws_env", "up"]  # the fixtures this module's test uses


@pytest.mark.parametrize("up", ["aws_env"], indirect=True)
def test_up_on_the_emulators_serves_suggestions_and_mutuals_from_the_graph(up: str) -> None:
    story(up)
