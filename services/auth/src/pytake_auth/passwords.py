"""argon2id password hashing, off the event loop and bounded in concurrency.

Hashing and verification use libsodium (PyNaCl) when the hash has one lane,
which is what every OWASP argon2id configuration uses: libsodium picks an
AVX2/SSSE3 implementation at run time and is 1.3-2x faster than the portable
build inside argon2-cffi's wheels (``bench/auth_login.py`` prints both). Hashes
with more lanes, and parsing of any hash's parameters, go through argon2-cffi.
Both write and read the same PHC string (``$argon2id$v=19$m=..,t=..,p=..$``),
so stored hashes move freely between them.

Each hash takes ``argon2_memory_cost_kib`` of memory and real CPU time, so they
run on a pool of ``password_hash_concurrency`` threads of their own (a login
flood queues instead of exhausting the pod's memory; a queued hash whose caller
went away is dropped). Unknown e-mails still pay for one
verification against a dummy hash, so response time does not reveal which
addresses are registered.
"""

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

import nacl.exceptions
import nacl.pwhash.argon2id as sodium_argon2id
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from pytake_auth.config import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._time_cost = settings.argon2_time_cost
        self._memory_kib = settings.argon2_memory_cost_kib
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._sodium = settings.argon2_parallelism == 1
        self._threads = ThreadPoolExecutor(
            settings.password_hash_concurrency, thread_name_prefix="argon2"
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.hash_sync, password)

    def hash_sync(self, password: str) -> str:
        if not self._sodium:
            return self._hasher.hash(password)
        encoded = sodium_argon2id.str(
            password.encode(), opslimit=self._time_cost, memlimit=self._memory_kib * 1024
        )
        return encoded.decode("ascii")

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; with no hash, spend the same effort and say no."""
        if password_hash is None:
            await self._verify(await self._dummy_hash(), password)
            return False
        return await self._verify(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    async def _verify(self, password_hash: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.verify_sync, password_hash, password)

    def verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            lanes = extract_parameters(password_hash).parallelism
        except InvalidHashError:
            return False
        if lanes != 1:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        try:
            return sodium_argon2id.verify(password_hash.encode("ascii"), password.encode())
        except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, UnicodeEncodeError):
            return False

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        return self._dummy
