"""The AccountStore contract: every adapter passes these tests.

`AccountsContract` is not collected itself; tests/projections/test_accounts.py subclasses it once
per adapter with an `accounts` fixture giving a fresh, empty store.
"""

from __future__ import annotations

import asyncio

from api.accounts import Account, AccountStore, IdempotencyRecord

ALICE = Account("alice", "u-alice", "$argon2id$hash-a")
STALE_MS = 1000


def record(key: str, created_ms: int, fingerprint: str = "f1") -> IdempotencyRecord:
    return IdempotencyRecord(key, fingerprint, created_ms)


class AccountsContract:
    async def test_create_then_find(self, accounts: AccountStore) -> None:
        assert await accounts.by_handle("alice") is None
        assert not await accounts.exists("u-alice")
        assert await accounts.create(ALICE)
        assert await accounts.by_handle("alice") == ALICE
        assert await accounts.exists("u-alice")

    async def test_taken_handle_changes_nothing(self, accounts: AccountStore) -> None:
        assert await accounts.create(ALICE)
        assert not await accounts.create(Account("alice", "u-other", "$argon2id$hash-b"))
        assert await accounts.by_handle("alice") == ALICE
        assert not await accounts.exists("u-other")

    async def test_concurrent_signups_one_winner(self, accounts: AccountStore) -> None:
        tries = [Account("bob", f"u-{i}", "h") for i in range(8)]
        results = await asyncio.gather(*(accounts.create(a) for a in tries))
        assert sorted(results) == [False] * 7 + [True]
        winner = tries[results.index(True)]
        assert await accounts.by_handle("bob") == winner

    async def test_delete(self, accounts: AccountStore) -> None:
        await accounts.create(ALICE)
        await accounts.delete("alice")
        assert await accounts.by_handle("alice") is None
        assert not await accounts.exists("u-alice")
        assert await accounts.create(ALICE)

    async def test_claim_complete_recall(self, accounts: AccountStore) -> None:
        assert await accounts.claim(record("k1", 10_000), STALE_MS) is None
        pending = await accounts.claim(record("k1", 10_001, "f2"), STALE_MS)
        assert pending == record("k1", 10_000)
        assert pending.pending
        await accounts.complete("k1", 202, b'{"event_id":"e1"}')
        done = await accounts.claim(record("k1", 99_000), STALE_MS)
        assert done == IdempotencyRecord("k1", "f1", 10_000, 202, b'{"event_id":"e1"}')
        assert not done.pending

    async def test_keys_are_independent(self, accounts: AccountStore) -> None:
        assert await accounts.claim(record("k1", 10_000), STALE_MS) is None
        assert await accounts.claim(record("k2", 10_000), STALE_MS) is None

    async def test_stale_pending_claim_is_taken_over(self, accounts: AccountStore) -> None:
        assert await accounts.claim(record("k1", 10_000), STALE_MS) is None
        assert await accounts.claim(record("k1", 10_500, "f2"), STALE_MS) is not None
        assert await accounts.claim(record("k1", 12_000, "f2"), STALE_MS) is None
        assert await accounts.claim(record("k1", 12_001), STALE_MS) == record("k1", 12_000, "f2")

    async def test_completed_answer_never_goes_stale(self, accounts: AccountStore) -> None:
        await accounts.claim(record("k1", 10_000), STALE_MS)
        await accounts.complete("k1", 202, b"{}")
        again = await accounts.claim(record("k1", 10**9), STALE_MS)
        assert again is not None and again.status == 202

    async def test_release_frees_a_pending_key_only(self, accounts: AccountStore) -> None:
        await accounts.claim(record("k1", 10_000), STALE_MS)
        await accounts.release("k1")
        assert await accounts.claim(record("k1", 10_001), STALE_MS) is None
        await accounts.complete("k1", 202, b"{}")
        await accounts.release("k1")
        assert (await accounts.claim(record("k1", 10_002), STALE_MS)) is not None

    async def test_concurrent_claims_one_winner(self, accounts: AccountStore) -> None:
        claims = (accounts.claim(record("k9", 10_000 + i), STALE_MS) for i in range(8))
        results = await asyncio.gather(*claims)
        assert sum(r is None for r in results) == 1
