"""What of the Neptune path can be checked without a cluster: the SigV4 handshake headers, and a
cluster that does not answer being GraphUnavailable (not a hang, not a raw transport error)."""

from __future__ import annotations

import pytest

from fanline.benchmarks.wrk import free_port
from projections.graph import GraphUnavailable
from projections.graph_gremlin import GremlinGraph, _sigv4_headers


def test_the_handshake_is_signed_for_neptune_db_in_the_region() -> None:
    # tests/conftest.py sets the fake credentials test/test.
    headers = _sigv4_headers("db.cluster.example", 8182, "eu-west-1")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=test/")
    assert "/eu-west-1/neptune-db/aws4_request" in headers["Authorization"]
    assert "host" in headers["Authorization"].split("SignedHeaders=")[1]
    assert headers["X-Amz-Date"].endswith("Z")


async def test_a_cluster_that_does_not_answer_is_graph_unavailable() -> None:
    graph = GremlinGraph.neptune("127.0.0.1", port=free_port(), region="us-east-1")
    with pytest.raises(GraphUnavailable, match=r"Neptune 127\.0\.0\.1"):
        await graph.suggestions("a", 5)
    await graph.close()
