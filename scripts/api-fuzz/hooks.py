"""Schemathesis hooks for scripts/test-api-fuzz: sign the requests that carry a signature.

Operations whose OpenAPI entry names the `EhrchainSignature` security scheme get their
`x-ehrchain-auth` header made by the fuzz account's key for the exact method and
path-and-query that go on the wire (a `requests` auth callable runs after the URL is encoded,
so the signature covers the bytes the node sees). Schemathesis decides whether a request has
the header at all (a test of a missing signature has none, and must get 401); when it has
one, the hook replaces the generated value with a valid signature. The script registered the
account as a patient and gave it records, grants, requests and workflow items, so signed
endpoints answer with real data. Where a signature is optional (ledger reads that members see
in full), the dev chain's admin signs the positive test cases, so the member views are checked
too, and the negative ones go unsigned (the public view).

A valid upload (`PUT /api/v1/blobs/{cid}`) must name the CID of its own bytes, which no schema
can say: for positive test cases the hook puts the CID of the generated body into the path,
so uploads really happen (and meet the quotas and rate limits). Likewise `open=true` on
`GET /api/v1/items` lists appointment slots only (a 400 with any other `kind`, a tie between
two query parameters that OpenAPI cannot state): positive cases with `open=true` ask for slots.

It also adds a check, `error_envelope`: every 4xx/5xx answer is the JSON error envelope with a
snake_case code, and its message quotes at most 32 characters of any one input in a row.

Environment: EHRCHAIN_FUZZ_SEED (hex), EHRCHAIN_FUZZ_CHAIN_ID, EHRCHAIN_FUZZ_MEMBER_KEYSTORE
(the admin's keystore file) and EHRCHAIN_PASSPHRASE.
"""

import base64
import hashlib
import json
import os
import re
import urllib.parse

import requests
import schemathesis

from ehrkeys import AUTH_HEADER, Signer, open_keystore

CHAIN_ID = os.environ["EHRCHAIN_FUZZ_CHAIN_ID"]
SIGNER = Signer(bytes.fromhex(os.environ["EHRCHAIN_FUZZ_SEED"]), CHAIN_ID)
# Operations where a signature is optional (ledger reads, shown in full to consortium members)
# are signed by the dev chain's admin, a member; unsigned ones see the public view.
MEMBER = Signer(open_keystore(os.environ["EHRCHAIN_FUZZ_MEMBER_KEYSTORE"], os.environ["EHRCHAIN_PASSPHRASE"]), CHAIN_ID)
BLOB_PATH = re.compile(r"^(/api/v1/blobs/)[^/?]*")


def cid_of(data: bytes) -> str:
    """CIDv1, raw codec (0x55), sha2-256 multihash (0x12, 32 bytes), multibase base32 ('b')."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


class SignRequest(requests.auth.AuthBase):
    def __init__(self, signer: Signer, fix_cid: bool):
        self.signer = signer
        self.fix_cid = fix_cid

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            body = b""  # a streamed body: sign an empty one (the node refuses the mismatch)
        if self.fix_cid:
            scheme, rest = r.url.split("://", 1)
            host, _, path = rest.partition("/")
            path = BLOB_PATH.sub(lambda m: m.group(1) + cid_of(body), "/" + path)
            r.url = f"{scheme}://{host}{path}"
        r.headers[AUTH_HEADER] = self.signer.header(r.method, r.path_url, body=body)
        return r


def signer_for(operation) -> Signer | None:
    security = operation.definition.raw.get("security", [])
    if not any("EhrchainSignature" in req for req in security):
        return None
    return MEMBER if {} in security else SIGNER


def is_positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return bool(meta is not None and meta.generation.mode.is_positive)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.path == "/api/v1/items" and is_positive(case) and case.query:
        if case.query.get("open") in (True, "true"):
            case.query["kind"] = "slot"
    signer = signer_for(case.operation)
    if signer is None:
        return
    if signer is MEMBER:
        # Optional signature: positive cases get the member view, negative ones the public view.
        if not is_positive(case):
            return
    elif not any(name.lower() == AUTH_HEADER for name in (case.headers or {})):
        return
    fix_cid = case.operation.path == "/api/v1/blobs/{cid}" and case.method.upper() == "PUT" and is_positive(case)
    kwargs["auth"] = SignRequest(signer, fix_cid)


# What an error message may quote of the caller's input (crates/node/src/api.rs ECHO_CHARS).
ECHO_CHARS = 32
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# Identifiers the node parsed and names back in canonical form ("no record rec… that you may
# see"): not an echo of arbitrary input.
PARSED_ID = re.compile(
    r"\b(ehr[0-9a-f]{40}|rec[0-9a-f]{32}|(evt|req)[0-9a-f]{64}|(slot|sym|rx|inv|pol|clm)[0-9a-f]{32}|[0-9a-f]{64})\b"
)


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _inputs(request: requests.PreparedRequest) -> list[str]:
    """The caller's input as the node reads it: path segments, query keys and values, body."""
    parsed = urllib.parse.urlsplit(request.url)
    out = [urllib.parse.unquote(seg, errors="replace") for seg in parsed.path.split("/")]
    for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True, errors="replace"):
        out += [k, v]
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if body:
        try:
            # A JSON body's strings as the node reads them (its own quotes and brackets would
            # meet the message's quoting and make a false match).
            _strings(json.loads(body), out)
        except ValueError:
            out.append(body)
    return [s for s in out if len(s) > ECHO_CHARS]


@schemathesis.check
def error_envelope(ctx, response, case):
    """Every 4xx/5xx is {"error": {"code": snake_case, "message": …}} as JSON, and its message
    quotes no more than ECHO_CHARS characters of any one input in a row."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", (
        f"error answer is {content_type or 'untyped'}, not the JSON envelope"
    )
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict) and set(body) == {"error"} and set(error) == {"code", "message"}, (
        f"not the error envelope: {response.content[:200]!r}"
    )
    assert isinstance(error["code"], str) and CODE.match(error["code"]), f"code {error['code']!r}"
    message = error["message"]
    assert isinstance(message, str) and message, "empty message"
    scrubbed = PARSED_ID.sub("", message)
    for text in _inputs(response.request):
        for i in range(len(text) - ECHO_CHARS):
            window = text[i : i + ECHO_CHARS + 1]
            assert window not in scrubbed, (
                f"the message quotes more than {ECHO_CHARS} characters of the input: {window!r}"
            )
    return None
