"""MemoryAccounts: the AccountStore port in dicts, for unit tests. Nothing survives the process."""

from __future__ import annotations

from dataclasses import replace

from projections.account_records import Account, IdempotencyRecord


class MemoryAccounts:
    def __init__(self) -> None:
        self._by_handle: dict[str, Account] = {}
        self._user_ids: set[str] = set()
        self._records: dict[str, IdempotencyRecord] = {}

    async def create(self, account: Account) -> bool:
        if account.handle in self._by_handle:
            return False
        self._by_handle[account.handle] = account
        self._user_ids.add(account.user_id)
        return True

    async def by_handle(self, handle: str) -> Account | None:
        return self._by_handle.get(handle)

    async def exists(self, user_id: str) -> bool:
        return user_id in self._user_ids

    async def delete(self, handle: str) -> None:
        account = self._by_handle.pop(handle, None)
        if account is not None:
            self._user_ids.discard(account.user_id)

    async def claim(self, record: IdempotencyRecord, stale_ms: int) -> IdempotencyRecord | None:
        current = self._records.get(record.key)
        if current is None or (current.pending and current.created_ms < record.created_ms - stale_ms):
            self._records[record.key] = record
            return None
        return current

    async def complete(self, key: str, status: int, body: bytes) -> None:
        current = self._records.get(key)
        if current is not None:
            self._records[key] = replace(current, status=status, body=body)

    async def release(self, key: str) -> None:
        current = self._records.get(key)
        if current is not None and current.pending:
            del self._records[key]

    async def close(self) -> None:
        return None
