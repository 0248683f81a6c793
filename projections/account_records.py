"""Records of the accounts store: sign-up credentials and idempotency answers.

They live in projections/ (not api/) because the adapters beside the other stores return them,
and projections may import nothing of the api. The port itself is `api.accounts.AccountStore`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Account:
    handle: str
    user_id: str
    # An argon2 hash string (the algorithm, its parameters and the salt are inside it).
    password_hash: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What happened to the first request with one (principal, Idempotency-Key).

    While the first request is still appending, `status` is 0 (pending); afterwards it holds the
    answer's status and body, which every retry gets back.
    """

    key: str
    # A digest of the first request (method, path, body): a retry must send the same request.
    fingerprint: str
    created_ms: int
    status: int = 0
    body: bytes = b""

    @property
    def pending(self) -> bool:
        return self.status == 0
