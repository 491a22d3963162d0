"""Schemathesis hooks for scripts/test-api-fuzz: sign the requests that carry a signature.

Operations whose OpenAPI entry names the `EhrchainSignature` security scheme get their
`x-ehrchain-auth` header made by the fuzz account's key for the exact method and
path-and-query that go on the wire (a `requests` auth callable runs after the URL is encoded,
so the signature covers the bytes the node sees). Schemathesis decides whether a request has
the header at all (a test of a missing signature has none, and must get 401); when it has
one, the hook replaces the generated value with a valid signature. The script registered the
account as a patient, so signed endpoints run with a real account.

A valid upload (`PUT /api/v1/blobs/{cid}`) must name the CID of its own bytes, which no schema
can say: for positive test cases the hook puts the CID of the generated body into the path,
so uploads really happen (and meet the quotas and rate limits). Likewise `open=true` on
`GET /api/v1/items` lists appointment slots only (a 400 with any other `kind`, a tie between
two query parameters that OpenAPI cannot state): positive cases with `open=true` ask for slots.

Environment: EHRCHAIN_FUZZ_SEED (hex), EHRCHAIN_FUZZ_CHAIN_ID.
"""

import base64
import hashlib
import os
import re

import requests
import schemathesis

from ehrkeys import AUTH_HEADER, Signer

SIGNER = Signer(bytes.fromhex(os.environ["EHRCHAIN_FUZZ_SEED"]), os.environ["EHRCHAIN_FUZZ_CHAIN_ID"])
BLOB_PATH = re.compile(r"^(/api/v1/blobs/)[^/?]*")


def cid_of(data: bytes) -> str:
    """CIDv1, raw codec (0x55), sha2-256 multihash (0x12, 32 bytes), multibase base32 ('b')."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


class SignRequest(requests.auth.AuthBase):
    def __init__(self, fix_cid: bool):
        self.fix_cid = fix_cid

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.fix_cid:
            body = r.body or b""
            if isinstance(body, str):
                body = body.encode()
            scheme, rest = r.url.split("://", 1)
            host, _, path = rest.partition("/")
            path = BLOB_PATH.sub(lambda m: m.group(1) + cid_of(body), "/" + path)
            r.url = f"{scheme}://{host}{path}"
        r.headers[AUTH_HEADER] = SIGNER.header(r.method, r.path_url)
        return r


def is_signed(operation) -> bool:
    return any("EhrchainSignature" in req for req in operation.definition.raw.get("security", []))


def is_positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return bool(meta is not None and meta.generation.mode.is_positive)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.path == "/api/v1/items" and is_positive(case) and case.query:
        if case.query.get("open") in (True, "true"):
            case.query["kind"] = "slot"
    if not is_signed(case.operation):
        return
    if not any(name.lower() == AUTH_HEADER for name in (case.headers or {})):
        return
    fix_cid = case.operation.path == "/api/v1/blobs/{cid}" and case.method.upper() == "PUT" and is_positive(case)
    kwargs["auth"] = SignRequest(fix_cid)
