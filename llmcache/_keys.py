"""Fingerprints and signed keys, derived from the workspace secret.

* The fingerprint is xxh3-128 of the canonical request bytes, seeded from the secret, the
  workspace, the namespace and its generation: fast enough for the hit path, and nobody
  without the secret can aim a collision. The in-process memory tier keys on it directly.
* The signed key names an entry in a shared tier:
  ``llmc:<scope>:<namespace>:<generation>:<keyed BLAKE2b of the fingerprint>``. It has a
  fixed length whatever the prompt size and contains no prompt text.
* The scope is ``<workspace>#<16 hex digits derived from the secret>``. Everything a workspace
  writes (entries, generation records, ledger counters, locks) is named under its scope, so
  two caches with the same workspace name and different secrets never touch each other's
  state: not by reading, not by `clear()`, not by `invalidate()`.
* Entries stored below the memory tier are encrypted and authenticated with AES-256-GCM
  under `entry_key`, with the signed key as associated data (the wire format is in
  `_record`); `entry_aead` is that cipher, built once per workspace. Each purpose has its
  own subkey, so a value computed for one purpose is useless for another, and a new secret
  makes every old entry unreadable.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_PREFIX", "KeySchedule", "check_name"]

KEY_PREFIX = "llmc"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")  # fullmatch: `$` would allow "name\n"
# What follows the workspace prefix in an entry key: namespace, generation, 32-hex name.
_ENTRY_TAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}:[^:\s]+:[0-9a-f]{32}\Z")


def check_name(kind: str, name: str) -> str:
    """Workspace and namespace names appear in keys, so they must be short and plain."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (it becomes part of every key)"
        )
    return name


def _subkey(secret: bytes, workspace: str, purpose: bytes) -> bytes:
    return hashlib.blake2b(
        workspace.encode(), key=secret[:64], person=purpose, digest_size=32
    ).digest()


class KeySchedule:
    """All key material of one workspace, derived once from its secret."""

    __slots__ = (
        "_fingerprint_key",
        "_name_hasher",
        "_name_key",
        "argument_key",
        "entry_aead",
        "entry_key",
        "generation_key",
        "ledger_key",
        "scope",
        "signed_memo",
        "workspace",
    )

    def __init__(self, secret: bytes, workspace: str) -> None:
        if len(secret) < 16:
            raise ConfigError("the cache secret must be at least 16 bytes long")
        # Secrets longer than BLAKE2b's 64-byte key limit are hashed down first.
        key = secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()
        self.workspace = check_name("workspace", workspace)
        self._fingerprint_key = _subkey(key, workspace, b"llmc-fingerprint")
        self._name_key = _subkey(key, workspace, b"llmc-signed-key")
        #: 32-byte AEAD key that encrypts entry bodies stored below the memory tier.
        self.entry_key = _subkey(key, workspace, b"llmc-entry-aead")
        #: The cipher for entries, keyed once here: keying AES-GCM per entry would cost more
        #: than the decryption itself on the hit path. (cryptography is loaded by the first
        #: cache built, not by `import llmcache`.)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.entry_aead: AESGCM = AESGCM(self.entry_key)
        #: Authenticates generation records, so nobody without the secret can forge one.
        self.generation_key = _subkey(key, workspace, b"llmc-generation")
        #: Names a recorded call's arguments by keyed hashes (replay mode's "which argument
        #: differs" hint), so an entry's metadata holds no argument value, even encrypted.
        self.argument_key = _subkey(key, workspace, b"llmc-arguments")
        #: Protects the ledger's field names at rest.
        self.ledger_key = _subkey(key, workspace, b"llmc-ledger")
        scope_id = _subkey(key, workspace, b"llmc-scope")[:8].hex()
        #: The name everything this workspace writes lives under: ``<workspace>#<16 hex>``.
        #: '#' cannot occur in a workspace name, so no two scopes are prefixes of each other.
        self.scope = f"{workspace}#{scope_id}"
        # Keyed BLAKE2b set-up costs more than hashing 16 bytes: copy a keyed hasher instead.
        self._name_hasher = hashlib.blake2b(key=self._name_key, digest_size=16)
        # Recently derived signed keys by fingerprint: lower-tier hits on hot entries skip
        # the BLAKE2b. A fingerprint alone determines its prefix, since it was computed
        # with that namespace generation's secret seed. Cleared in place, never rebound:
        # the hit path reads it directly.
        self.signed_memo: dict[int, str] = {}

    def seed(self, namespace: str, generation: str) -> int:
        """The 64-bit xxh3 seed for one namespace generation of this workspace."""
        material = f"{namespace}\0{generation}".encode()
        digest = hashlib.blake2b(material, key=self._fingerprint_key, digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def key_prefix(self, namespace: str, generation: str) -> str:
        return f"{KEY_PREFIX}:{self.scope}:{namespace}:{generation}:"

    def workspace_prefix(self) -> str:
        """The prefix of every entry key of this workspace and secret (and nothing else's)."""
        return f"{KEY_PREFIX}:{self.scope}:"

    def is_entry_key(self, key: str) -> bool:
        """Whether `key` has the form of one of this workspace's entry keys (and nothing else:
        not a lock, generation record or ledger key, not another scope's key)."""
        prefix = self.workspace_prefix()
        return key.startswith(prefix) and _ENTRY_TAIL.match(key[len(prefix) :]) is not None

    def signed_key(self, prefix: str, fingerprint: int) -> str:
        """The shared-tier name of an entry: prefix + keyed BLAKE2b of the fingerprint."""
        memo = self.signed_memo
        signed = memo.get(fingerprint)
        if signed is None:
            hasher = self._name_hasher.copy()
            hasher.update(fingerprint.to_bytes(16, "big"))
            signed = prefix + hasher.hexdigest()
            if len(memo) >= 8192:  # bounded: start over rather than track recency
                memo.clear()
            memo[fingerprint] = signed
        return signed
