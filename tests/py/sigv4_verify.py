"""Recompute an AWS Signature Version 4 with botocore (the AWS SDK for Python's own
signer) from what an upstream received, and compare it with the one that arrived.

    sigv4_verify.py request.json

request.json: {"method", "url" (scheme://host/path?query exactly as received),
"headers": [[name, value], ...] as received, "body_b64", "access_key_id",
"secret_access_key", "session_token" (or null), "region", "service"}.

botocore signs the headers the received `SignedHeaders` names, at the received
`X-Amz-Date`. The payload hash it signs is sha256 of the received body, computed here,
unless the request declared `UNSIGNED-PAYLOAD`. Prints one JSON line:
{"received", "expected", "signed_headers", "expected_signed_headers",
"content_sha256", "body_sha256"}.
"""
import base64
import datetime
import hashlib
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def parse_authorization(value: str) -> dict:
    algorithm, _, rest = value.partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    fields["algorithm"] = algorithm
    return fields


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    headers = {}
    for name, value in req["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    one = lambda name: ",".join(headers.get(name, []))
    auth = parse_authorization(one("authorization"))
    signed = auth["SignedHeaders"].split(";")
    amz_date = one("x-amz-date")
    body = base64.b64decode(req["body_b64"])
    body_sha256 = hashlib.sha256(body).hexdigest()
    declared = one("x-amz-content-sha256")

    # botocore sets X-Amz-Date and X-Amz-Security-Token itself.
    mine = {"x-amz-date", "x-amz-security-token", "authorization"}
    to_sign = {h: one(h) for h in signed if h not in mine}
    if "x-amz-content-sha256" in to_sign and declared != "UNSIGNED-PAYLOAD":
        to_sign["x-amz-content-sha256"] = body_sha256
    request = AWSRequest(method=req["method"], url=req["url"], data=body, headers=to_sign)
    at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda: at
    creds = Credentials(req["access_key_id"], req["secret_access_key"], req.get("session_token"))
    botocore.auth.SigV4Auth(creds, req["service"], req["region"]).add_auth(request)
    expected = parse_authorization(request.headers["Authorization"])
    print(json.dumps({
        "received": auth.get("Signature"),
        "expected": expected.get("Signature"),
        "credential": auth.get("Credential"),
        "expected_credential": expected.get("Credential"),
        "signed_headers": auth["SignedHeaders"],
        "expected_signed_headers": expected["SignedHeaders"],
        "content_sha256": declared,
        "body_sha256": body_sha256,
        "security_token_matches": one("x-amz-security-token") == (req.get("session_token") or ""),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
