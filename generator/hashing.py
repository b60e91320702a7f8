"""Content hashes of JSON-able inputs: the keys of splits, statistics and caches."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def json_digest(obj: Any) -> str:
    """SHA-256 hex digest of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
