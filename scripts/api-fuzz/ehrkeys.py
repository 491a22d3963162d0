"""ehrchain keys in Python, for the API fuzzer: the account id of an ed25519 key, request
signatures (`x-ehrchain-auth`), and a keystore file for a known seed that the `ehrchain` CLI
opens like one it made itself.

Mirrors crates/types/src/{domain,id,request}.rs and crates/crypto/src/keystore.rs; the fuzz
run fails at once (registration through the CLI, then 401s on every signed call) if they drift.

    python ehrkeys.py import --home DIR --name NAME --seed HEX --passphrase P   # prints the account

`open_keystore` reads one back (the fuzz hook signs as the dev chain's admin with it).
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import time

import nacl.bindings
import nacl.pwhash
import nacl.signing

# crates/types/src/domain.rs
ACCOUNT_ID_TAG = b"ehrchain/account/v1"
REQUEST_TAG = b"ehrchain/request/v2"
# crates/crypto/src/keystore.rs
KEYSTORE_AAD_TAG = b"ehrchain/keystore/v1"
# crates/types/src/request.rs
AUTH_HEADER = "x-ehrchain-auth"


def tagged_hash(tag: bytes, *parts: bytes) -> bytes:
    """domain::tagged_hash: SHA-256 of the tag's length (u32, big endian), the tag, the parts."""
    h = hashlib.sha256()
    h.update(struct.pack(">I", len(tag)))
    h.update(tag)
    for p in parts:
        h.update(p)
    return h.digest()


def account_id(public_key: bytes) -> bytes:
    """AccountId::from_public_key: the first 20 bytes of the tagged hash of the key."""
    return tagged_hash(ACCOUNT_ID_TAG, public_key)[:20]


def account_string(public_key: bytes) -> str:
    return "ehr" + account_id(public_key).hex()


class Signer:
    """Signs API requests as request.rs's RequestAuth::verify checks them."""

    def __init__(self, seed: bytes, chain_id: str):
        self.key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self.key.verify_key)
        self.chain_id = chain_id

    def header(
        self,
        method: str,
        path_and_query: str,
        timestamp_ms: int | None = None,
        body: bytes = b"",
    ) -> str:
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        body_hash = hashlib.sha256(body).hexdigest()
        message = f"{self.chain_id}\n{method.upper()}\n{path_and_query}\n{ts}\n{body_hash}".encode()
        sig = self.key.sign(REQUEST_TAG + message).signature
        return f"key={self.public_key.hex()},ts={ts},body={body_hash},sig={sig.hex()}"


def keystore_file(seed: bytes, passphrase: str, m_cost_kib: int = 19 * 1024, t_cost: int = 2) -> dict:
    """KeystoreFile::seal: Argon2id (v0x13, 1 lane) of the passphrase, XChaCha20-Poly1305 of the
    seed with the account id and public key as associated data."""
    public_key = bytes(nacl.signing.SigningKey(seed).verify_key)
    acct = account_id(public_key)
    salt = os.urandom(16)
    nonce = os.urandom(24)
    key = nacl.pwhash.argon2id.kdf(
        32, passphrase.encode(), salt, opslimit=t_cost, memlimit=m_cost_kib * 1024
    )
    aad = KEYSTORE_AAD_TAG + acct + public_key
    ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(seed, aad, nonce, key)
    return {
        "version": 1,
        "account": "ehr" + acct.hex(),
        "public_key": public_key.hex(),
        "kdf": "argon2id",
        "kdf_params": {"m_cost_kib": m_cost_kib, "t_cost": t_cost, "p_cost": 1},
        "salt": salt.hex(),
        "cipher": "xchacha20poly1305",
        "nonce": nonce.hex(),
        "ciphertext": ct.hex(),
    }


def open_keystore(path: str, passphrase: str) -> bytes:
    """KeystoreFile::open: the seed of a keystore file."""
    with open(path) as f:
        ks = json.load(f)
    if ks["version"] != 1 or ks["kdf"] != "argon2id" or ks["cipher"] != "xchacha20poly1305":
        raise ValueError(f"{path}: unsupported keystore")
    p = ks["kdf_params"]
    if p["p_cost"] != 1:
        raise ValueError(f"{path}: only one Argon2 lane is supported here")
    key = nacl.pwhash.argon2id.kdf(
        32,
        passphrase.encode(),
        bytes.fromhex(ks["salt"]),
        opslimit=p["t_cost"],
        memlimit=p["m_cost_kib"] * 1024,
    )
    aad = KEYSTORE_AAD_TAG + bytes.fromhex(ks["account"].removeprefix("ehr")) + bytes.fromhex(ks["public_key"])
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        bytes.fromhex(ks["ciphertext"]), aad, bytes.fromhex(ks["nonce"]), key
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="write NAME.json in the keystore dir for a known seed")
    imp.add_argument("--home", required=True)
    imp.add_argument("--name", required=True)
    imp.add_argument("--seed", required=True, help="32-byte seed, hex")
    imp.add_argument("--passphrase", required=True)
    args = ap.parse_args()
    seed = bytes.fromhex(args.seed)
    if len(seed) != 32:
        ap.error("the seed must be 32 bytes (64 hex)")
    path = os.path.join(args.home, f"{args.name}.json")
    os.makedirs(args.home, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keystore_file(seed, args.passphrase), f, indent=2)
    print(account_string(bytes(nacl.signing.SigningKey(seed).verify_key)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
