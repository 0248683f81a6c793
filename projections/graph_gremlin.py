"""GremlinGraph: the GraphStore through gremlinpython's traversal API, embedded or on Neptune.

`GremlinGraph.embedded(path)`: gremlite (Gremlin over one SQLite file, sqlite3 underneath).
`GremlinGraph.neptune(host, region=..., iam=True)`: Amazon Neptune through gremlinpython's
DriverRemoteConnection, signed with SigV4 when `iam`. Only the embedded graph is tested here;
the Neptune path is the same traversals over another remote connection (see README).

The traversals keep to what gremlite 0.1.2 supports and Neptune (TinkerPop 3.7) shares:
V/V(ids), has, out/out_e/in_v, fold/unfold/coalesce, add_v/add_e(to), property(single), drop,
project/by, id, where. gremlite has no group_count, dedup, aggregate, merge_v/merge_e, and its
P.without silently matches nothing, so scoring and exclusion happen here in Python over the
two-hop id list (`rank_suggestions`). Its has_label(...) scans every vertex of the label, so
lookups use has('user_id', ...) alone (an index seek).

The embedded graph answers suggestions, mutuals, id -> user_id and follow_lists in SQL over
gremlite's quads table instead (`_SECOND_HOP`: suggestions about 10x faster), and checks in SQL
whether an edge exists before adding it; every write still goes through Gremlin.
`embedded(path, sql=False)` keeps the traversals alone, which tests compare the SQL with.

Vertex ids are gremlite's integers (Neptune's strings): never reused and, since no user vertex
is ever dropped, each names one user_id for good; so the id -> user_id map is cached. Writers
learn new ids only after their commit, readers only from committed data.

gremlinpython and sqlite3 are synchronous: every call runs on the adapter's own thread (the
sqlite3 connection lives there), so the event loop never blocks on the graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gremlin_python.process.anonymous_traversal import traversal
from gremlin_python.process.graph_traversal import __
from gremlin_python.process.traversal import Cardinality, P

from projections.graph import (
    DeleteEdge,
    GraphMutation,
    GraphUnavailable,
    PutEdge,
    UpsertUser,
    rank_scores,
    rank_suggestions,
)

T = TypeVar("T")
VertexId = int | str

USER = "user"
USER_ID = "user_id"
HANDLE = "handle"
FOLLOWS = "follows"
# The applied marks: one vertex per shard (no user vertex has these properties).
MARK = "applied_mark"
MARK_SHARD = "mark_shard"
SEQUENCE = "sequence"
ID_CHUNK = 500  # ids per V(ids) lookup: well under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class _Remote:
    g: Any  # gremlinpython's GraphTraversalSource (untyped)
    commit: Callable[[], None]
    rollback: Callable[[], None]
    close: Callable[[], None]
    sql: sqlite3.Connection | None = None  # embedded: gremlite's own connection (see _SECOND_HOP)


def _embedded_remote(path: Path, sql: bool) -> _Remote:
    from gremlite import SQLiteConnection

    remote = SQLiteConnection(path, timeout=10.0)
    # WAL: the API's reads go on while the processor commits a batch.
    remote.con.execute("PRAGMA journal_mode=WAL")
    return _Remote(traversal().with_remote(remote), remote.commit, remote.rollback, remote.close,
                   remote.con if sql else None)


# The embedded graph's reads of suggestions and mutuals in SQL over gremlite's quads table: its
# traversals cost 15-40 µs of Python per result (a user's ~440 two-hop paths: 7-13 ms at the
# median), these queries one SQLite statement (0.3 ms). gremlite documents its encoding
# (gremlite.querytools.create_edge): an edge is the quad (+source vertex id, -label string id,
# +target vertex id, -edge id), and it creates the index `sp` on (s, p). INDEXED BY and CROSS
# JOIN fix the plan: without statistics SQLite otherwise scans every edge through `pg` (100 ms).
# The Gremlin traversals stay the reads on Neptune; tests check both answer the same.
_FOLLOWEES = "SELECT o FROM quads INDEXED BY sp WHERE s = ?1 AND p = ?2"
# Every vertex with its user_id (a property's quad: +vertex, +name string id, value, +property id;
# a string value is its string id), and every edge of a label (the whole graph, for --verify).
_USER_IDS = """SELECT q.s, v.v FROM quads AS q INDEXED BY pg JOIN strings AS v ON v.id = q.o
    WHERE q.p = (SELECT id FROM strings WHERE v = ?1)"""
_EDGES = "SELECT s, o FROM quads INDEXED BY pg WHERE p = -(SELECT id FROM strings WHERE v = ?1)"
# Whether the edge a -label-> b exists. The label's id is looked up each time, never cached: in a
# write transaction it may be new, and gone again after a rollback.
_EDGE = """SELECT 1 FROM quads INDEXED BY ops
    WHERE o = ?3 AND p = -(SELECT id FROM strings WHERE v = ?2) AND s = ?1"""
_SECOND_HOP = """SELECT q.o, count(*) FROM quads AS f INDEXED BY sp
    CROSS JOIN quads AS q INDEXED BY sp ON q.s = f.o AND q.p = ?2
    WHERE f.s = ?1 AND f.p = ?2 GROUP BY q.o"""


def _sigv4_headers(host: str, port: int, region: str) -> dict[str, str]:
    """Neptune IAM auth: the websocket handshake carries a SigV4 signature of GET /gremlin."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    credentials = Session().get_credentials()
    if credentials is None:
        raise GraphUnavailable("Neptune IAM auth: no AWS credentials found")
    request = AWSRequest(method="GET", url=f"https://{host}:{port}/gremlin")
    SigV4Auth(credentials, "neptune-db", region).add_auth(request)
    return dict(request.headers.items())


def _neptune_remote(host: str, port: int, region: str | None) -> _Remote:
    from gremlin_python.driver.driver_remote_connection import DriverRemoteConnection

    headers = _sigv4_headers(host, port, region) if region else None
    connection = DriverRemoteConnection(f"wss://{host}:{port}/gremlin", "g", headers=headers)
    # Neptune commits each traversal on its own: nothing to commit or roll back per batch.
    return _Remote(traversal().with_remote(connection), lambda: None, lambda: None, connection.close)


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from gremlin_python.driver.protocol import GremlinServerError
    from gremlite.errors import BadDatabase

    # Locked or unreadable file, a file that is not a gremlite graph, a refusing cluster.
    return (sqlite3.OperationalError, sqlite3.DatabaseError, BadDatabase, OSError, GremlinServerError)


class GremlinGraph:
    def __init__(self, connect: Callable[[], _Remote], name: str) -> None:
        self._connect = connect
        self._name = name
        self._remote: _Remote | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph")
        self._unavailable = _unavailable_errors()
        self._closed = False
        # Learned from committed data only (see the module docstring).
        self._user_of: dict[VertexId, str] = {}
        self._vertex_of: dict[str, VertexId] = {}
        self._follows_label: int | None = None  # gremlite's encoded edge label (see _SECOND_HOP)

    @classmethod
    def embedded(cls, path: Path, *, sql: bool = True) -> GremlinGraph:
        """`sql=False`: only the Gremlin traversals (Neptune's), no SQL shortcuts (see _SECOND_HOP)."""
        return cls(lambda: _embedded_remote(path, sql), f"graph {path}")

    @classmethod
    def neptune(cls, host: str, *, port: int = 8182, region: str | None = None) -> GremlinGraph:
        """`region` given: sign with SigV4 for IAM auth (the cluster's `iam_auth` setting)."""
        return cls(lambda: _neptune_remote(host, port, region), f"Neptune {host}")

    # --- the thread ---------------------------------------------------------------------------
    async def _call(self, work: Callable[[_Remote], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, work)

    def _run(self, work: Callable[[_Remote], T]) -> T:
        try:
            if self._remote is None:
                self._remote = self._connect()
            return work(self._remote)
        except self._unavailable as exc:
            self._drop()  # the next call connects again (a fresh signature, a fresh file handle)
            raise GraphUnavailable(f"{self._name}: {exc}") from exc

    def _drop(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            # Already broken, maybe: the error that got us here is the one to report.
            with contextlib.suppress(Exception):
                remote.close()

    def _learn(self, pairs: Iterable[tuple[VertexId, str]]) -> None:
        for vertex, user_id in pairs:
            self._user_of[vertex] = user_id
            self._vertex_of[user_id] = vertex

    def _names(self, r: _Remote, vertices: Iterable[VertexId]) -> dict[VertexId, str]:
        wanted = set(vertices)
        missing = [v for v in wanted if v not in self._user_of]
        for start in range(0, len(missing), ID_CHUNK):
            chunk = missing[start:start + ID_CHUNK]
            if r.sql is not None:
                # A vertex property is the quad (+vertex id, +name string id, value, +property
                # id); a string value is its string id.
                marks = ",".join("?" * len(chunk))
                rows = r.sql.execute(f"""SELECT q.s, v.v FROM quads AS q INDEXED BY sp
                    JOIN strings AS v ON v.id = q.o JOIN strings AS n ON n.id = q.p
                    WHERE q.s IN ({marks}) AND n.v = ?""", (*chunk, USER_ID)).fetchall()
                self._learn(rows)
            else:
                found = (r.g.V(chunk).project("i", "u").by(__.id_()).by(__.values(USER_ID)).to_list())
                self._learn((row["i"], row["u"]) for row in found)
        return {v: self._user_of[v] for v in wanted}

    # --- writes -------------------------------------------------------------------------------
    async def apply(self, mutations: Sequence[GraphMutation], shard_id: str, sequence: str) -> None:
        await self._call(lambda r: self._apply(r, mutations, shard_id, sequence))

    def _apply(
        self, r: _Remote, mutations: Sequence[GraphMutation], shard_id: str, sequence: str
    ) -> None:
        g = r.g
        made: dict[str, VertexId] = {}

        def vertex(user_id: str) -> VertexId:
            known = made.get(user_id, self._vertex_of.get(user_id))
            if known is not None:
                return known
            found: VertexId = (g.V().has(USER_ID, user_id).fold()
                               .coalesce(__.unfold(), __.add_v(USER).property(USER_ID, user_id))
                               .id_().next())
            made[user_id] = found
            return found

        try:
            for m in mutations:
                match m:
                    case UpsertUser():
                        g.V(vertex(m.user_id)).property(Cardinality.single, HANDLE, m.handle).iterate()
                    case PutEdge():
                        a, b = vertex(m.follower_id), vertex(m.followee_id)
                        if r.sql is not None:
                            # One index seek, in this transaction: the coalesce below walks and
                            # materialises every out-edge of the follower (2/3 of folding's time).
                            if r.sql.execute(_EDGE, (a, FOLLOWS, b)).fetchone() is None:
                                g.V(b).as_("b").V(a).add_e(FOLLOWS).to("b").iterate()
                        else:
                            # The follower's out-edges (at most its following) are searched, not
                            # the followee's in-edges (a celebrity's are many).
                            (g.V(b).as_("b").V(a)
                             .coalesce(__.out_e(FOLLOWS).where(__.in_v().as_("b")), __.add_e(FOLLOWS).to("b"))
                             .iterate())
                    case DeleteEdge():
                        (g.V().has(USER_ID, m.follower_id).out_e(FOLLOWS)
                         .where(__.in_v().has(USER_ID, m.followee_id)).drop().iterate())
                    case _:
                        raise TypeError(f"not a graph mutation: {m!r}")
            # The mark last, in the same transaction (embedded): never ahead of its effects.
            (g.V().has(MARK_SHARD, shard_id).fold()
             .coalesce(__.unfold(), __.add_v(MARK).property(MARK_SHARD, shard_id))
             .property(Cardinality.single, SEQUENCE, sequence).iterate())
            r.commit()
        except BaseException:
            r.rollback()
            raise
        self._learn((v, u) for u, v in made.items())

    # --- reads --------------------------------------------------------------------------------
    async def applied(self) -> dict[str, str]:
        def read(r: _Remote) -> dict[str, str]:
            rows = r.g.V().has(MARK_SHARD).project("s", "q").by(MARK_SHARD).by(SEQUENCE).to_list()
            return {str(row["s"]): str(row["q"]) for row in rows}

        return await self._call(read)

    async def following_ids(self, user_id: str) -> list[str]:
        def read(r: _Remote) -> list[str]:
            ids = r.g.V().has(USER_ID, user_id).out(FOLLOWS).id_().to_list()
            names = self._names(r, ids)
            return sorted(names[v] for v in ids)

        return await self._call(read)

    async def follow_lists(self) -> dict[str, list[str]]:
        def read(r: _Remote) -> dict[str, list[str]]:
            if r.sql is not None:
                return self._sql_follow_lists(r.sql)
            rows = (r.g.V().has(USER_ID).project("u", "f")
                    .by(USER_ID).by(__.out(FOLLOWS).values(USER_ID).fold()).to_list())
            return {str(row["u"]): sorted(row["f"]) for row in rows}

        return await self._call(read)

    async def handles(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}

        def read(r: _Remote) -> dict[str, str]:
            rows = (r.g.V().has(USER_ID, P.within(list(user_ids))).has(HANDLE)
                    .project("u", "h").by(USER_ID).by(HANDLE).to_list())
            return {str(row["u"]): str(row["h"]) for row in rows}

        return await self._call(read)

    def _vertex(self, g: Any, user_id: str) -> VertexId | None:
        """The user's vertex id (None: no such vertex yet)."""
        if user_id not in self._vertex_of:
            found = g.V().has(USER_ID, user_id).id_().to_list()
            if not found:
                return None
            self._learn([(found[0], user_id)])
        return self._vertex_of[user_id]

    def _follows_p(self, sql: sqlite3.Connection) -> int | None:
        """The `p` of a follows edge's quad; None before the first follows edge was committed."""
        if self._follows_label is None:
            row = sql.execute("SELECT id FROM strings WHERE v = ?", (FOLLOWS,)).fetchone()
            if row is not None:
                self._follows_label = -int(row[0])  # strings are never deleted: stable
        return self._follows_label

    def _sql_suggestions(self, r: _Remote, sql: sqlite3.Connection, user_id: str,
                         limit: int) -> list[tuple[str, int]]:
        vertex, follows = self._vertex(r.g, user_id), self._follows_p(sql)
        if vertex is None or follows is None:
            return []
        followees = [row[0] for row in sql.execute(_FOLLOWEES, (vertex, follows))]
        paths = dict(sql.execute(_SECOND_HOP, (vertex, follows)).fetchall())
        names = self._names(r, [*followees, *paths])
        return rank_scores(user_id, (names[v] for v in followees),
                           {names[v]: n for v, n in paths.items()}, limit)

    def _sql_follow_lists(self, sql: sqlite3.Connection) -> dict[str, list[str]]:
        # In one read transaction: the users and the edges of the same commit.
        sql.execute("SAVEPOINT follow_lists")
        try:
            users = dict(sql.execute(_USER_IDS, (USER_ID,)).fetchall())
            lists: dict[str, list[str]] = {user: [] for user in users.values()}
            for source, target in sql.execute(_EDGES, (FOLLOWS,)):
                lists[users[source]].append(users[target])
        finally:
            sql.execute("RELEASE follow_lists")
        return {user: sorted(followees) for user, followees in lists.items()}

    def _sql_mutuals(self, r: _Remote, sql: sqlite3.Connection, a: str, b: str) -> list[str]:
        va, vb, follows = self._vertex(r.g, a), self._vertex(r.g, b), self._follows_p(sql)
        if va is None or vb is None or follows is None:
            return []
        common = ({row[0] for row in sql.execute(_FOLLOWEES, (va, follows))}
                  & {row[0] for row in sql.execute(_FOLLOWEES, (vb, follows))})
        names = self._names(r, common)
        return sorted(names[v] for v in common)

    async def suggestions(self, user_id: str, limit: int) -> list[tuple[str, int]]:
        def read(r: _Remote) -> list[tuple[str, int]]:
            if r.sql is not None:
                return self._sql_suggestions(r, r.sql, user_id, limit)
            rows = (r.g.V().has(USER_ID, user_id).project("f", "s")
                    .by(__.out(FOLLOWS).id_().fold())
                    .by(__.out(FOLLOWS).out(FOLLOWS).id_().fold()).to_list())
            if not rows:
                return []
            followees, second = rows[0]["f"], rows[0]["s"]
            names = self._names(r, [*followees, *second])
            return rank_suggestions(
                user_id, (names[v] for v in followees), (names[v] for v in second), limit
            )

        return await self._call(read)

    async def mutuals(self, a: str, b: str) -> list[str]:
        def read(r: _Remote) -> list[str]:
            if r.sql is not None:
                return self._sql_mutuals(r, r.sql, a, b)
            rows = (r.g.V().has(USER_ID, P.within([a, b])).project("u", "f")
                    .by(USER_ID).by(__.out(FOLLOWS).id_().fold()).to_list())
            followees = {row["u"]: set(row["f"]) for row in rows}
            common = followees.get(a, set()) & followees.get(b, set())
            names = self._names(r, common)
            return sorted(names[v] for v in common)

        return await self._call(read)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._drop)
        finally:
            self._executor.shutdown(wait=True)
