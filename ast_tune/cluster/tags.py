"""Ray node tags kept in a pod's environment, since RunPod pods carry no tags.

Ray's autoscaler v2 (the default of ``ray up`` since Ray 2.50) identifies nodes by the
node-kind, user-node-type and launch-request tags, and ``ray up`` compares the launch-config
hash of the head. Those are fixed when a pod is created, so they travel in one env variable,
``AST_TUNE_RAY_TAGS=ray-node-type=head,ray-user-node-type=head,...``. Tags Ray sets later (the
node status, the runtime-config hash) live in the provider's memory.

Keys and values are restricted to ``[A-Za-z0-9._-]`` so the variable is safe in any shell
and in any RunPod environment file; anything else is rejected with the tag's name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

TAGS_ENV = "AST_TUNE_RAY_TAGS"
# Every pod also carries this tag: a digest of the cluster's SSH public key, so that two users of one
# RunPod account who pick the same cluster_name still never list, update or terminate each other's pods.
CLUSTER_ID_TAG = "ast-tune-cluster-id"
_CLUSTER_ID = re.compile(r"[0-9a-f]{16}")

_KEY = re.compile(r"[a-z][a-z0-9-]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9._-]{0,128}")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,59}")


def check_cluster_name(name: object) -> str:
    """Return ``name`` if it can name pods (``ray-<name>-head``) and tag them.

    Raises:
        ValueError: naming ``cluster_name`` and the allowed characters.
    """
    if not isinstance(name, str) or not _CLUSTER_NAME.fullmatch(name):
        raise ValueError(
            "cluster_name: must be 1-60 letters, digits, '_' or '-', starting with a letter "
            f"or digit, got {name!r}"
        )
    return name


def encode_tags(tags: Mapping[str, str]) -> str:
    """Encode tags as ``key=value,key=value`` (sorted by key).

    Raises:
        ValueError: naming the first tag whose key or value has a disallowed character.
    """
    for key, value in tags.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"tag key {key!r}: must match {_KEY.pattern}")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise ValueError(
                f"tag {key}: value must be up to 128 letters, digits, '.', '_' or '-', got {value!r}"
            )
    return ",".join(f"{key}={tags[key]}" for key in sorted(tags))


def decode_tags(text: str) -> dict[str, str]:
    """Inverse of :func:`encode_tags`; an empty or malformed entry is skipped."""
    tags = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and _KEY.fullmatch(key):
            tags[key] = value
    return tags


def matches(tags: Mapping[str, str], tag_filters: Mapping[str, str]) -> bool:
    """True if every filter key is present in ``tags`` with the same value."""
    return all(tags.get(key) == value for key, value in tag_filters.items())


def cluster_id(public_key: str) -> str:
    """The :data:`CLUSTER_ID_TAG` of a cluster whose pods trust ``public_key``: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key.strip().encode()).hexdigest()[:16]


def check_cluster_id(value: object) -> str:
    """Return ``value`` if it is a :func:`cluster_id`; ValueError naming ``provider.cluster_id`` otherwise."""
    if not isinstance(value, str) or not _CLUSTER_ID.fullmatch(value):
        raise ValueError("provider.cluster_id: must be 16 hex digits, set by `ray up` from auth's public key "
                         f"(leave it unset); got {value!r}")
    return value
