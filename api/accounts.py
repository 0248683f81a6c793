"""The AccountStore port: credentials by handle and the answers of idempotent requests.

Adapters (beside the other store adapters): `projections.memory_accounts.MemoryAccounts`,
`projections.sqlite_accounts.SQLiteAccounts`, `projections.dynamodb_accounts.DynamoDBAccounts`;
all pass `tests/projections/accounts_contract.py`.

Every conditional write is decided by the store itself (a unique key, a condition expression),
never by a read followed by a write, so two API processes cannot both win a handle or a key.
"""

from __future__ import annotations

from typing import Protocol

from projections.account_records import Account, IdempotencyRecord

__all__ = ["Account", "AccountStore", "IdempotencyRecord"]


class AccountStore(Protocol):
    async def create(self, account: Account) -> bool:
        """Store the account unless its handle is taken; False (and no change) if it is."""
        ...

    async def by_handle(self, handle: str) -> Account | None: ...

    async def exists(self, user_id: str) -> bool:
        """Whether a signed-up account has this user id."""
        ...

    async def delete(self, handle: str) -> None:
        """Forget an account (undoes a sign-up whose event could not be appended)."""
        ...

    async def claim(self, record: IdempotencyRecord, stale_ms: int) -> IdempotencyRecord | None:
        """Store `record` (pending) if its key is new, or replace a pending one older than `stale_ms`.

        Answers None when the caller now owns the key, else the record already there.
        """
        ...

    async def complete(self, key: str, status: int, body: bytes) -> None:
        """Record the answer of the request that owns `key`."""
        ...

    async def release(self, key: str) -> None:
        """Drop a pending claim (its request failed before appending anything)."""
        ...

    async def close(self) -> None: ...
