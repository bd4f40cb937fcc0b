"""A thin, bounded-time client for the RunPod calls the node provider makes.

- GraphQL at ``$RUNPOD_API_BASE_URL/graphql`` (default ``https://api.runpod.io``), as the
  ``runpod`` SDK: list pods and terminate a pod, sending the SDK's own query documents.
- REST at ``$RUNPOD_API_URL/pods`` (default ``https://rest.runpod.io/v1``, as ``runpodctl``):
  create a pod. Only REST takes ``globalNetworking``, and its JSON body encodes every value.

Why not the SDK's transport: ``runpod.api.graphql.run_graphql_query`` has a fixed 30 s timeout
and reads a process-global key. The SDK builds its queries with f-strings, so the only value we
let into a query is a pod id that matched ``[A-Za-z0-9]+`` (:func:`check_pod_id`).

Every request has a timeout. No error message or log line carries the API key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import requests
from runpod.api.mutations.pods import generate_pod_terminate_mutation
from runpod.api.queries.pods import QUERY_POD

logger = logging.getLogger(__name__)

GRAPHQL_BASE_ENV = "RUNPOD_API_BASE_URL"  # the runpod SDK reads the same variable
REST_BASE_ENV = "RUNPOD_API_URL"  # runpodctl reads the same variable
DEFAULT_GRAPHQL_BASE = "https://api.runpod.io"
DEFAULT_REST_BASE = "https://rest.runpod.io/v1"

_POD_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class RunPodAPIError(RuntimeError):
    """A RunPod API call failed, timed out or answered something unusable."""


def check_pod_id(pod_id: object) -> str:
    """Return ``pod_id`` if it is safe to place inside a GraphQL string literal.

    Raises:
        ValueError: if it is not 1-64 ASCII letters or digits (RunPod ids look like
            ``xedezhzb9la3ye``).
    """
    if not isinstance(pod_id, str) or not _POD_ID.fullmatch(pod_id):
        raise ValueError(f"pod id must be 1-64 ASCII letters or digits, got {pod_id!r}")
    return pod_id


@dataclass(frozen=True)
class Pod:
    """What the provider needs to know about one pod.

    Attributes:
        id: RunPod's pod id.
        name: the pod's name.
        desired_status: ``RUNNING``, ``EXITED`` or ``TERMINATED``.
        env: the pod's environment variables.
        ssh_host: public IP of the port-22 mapping; None while the pod starts.
        ssh_port: public TCP port mapped to the pod's port 22; None while the pod starts.
        endpoint_error: why the API's port-22 mapping is unusable (an IP that does not parse,
            a port that is not 1-65535); the pod stays listed, so it can still be terminated.
    """

    id: str
    name: str
    desired_status: str
    env: dict[str, str] = field(default_factory=dict)
    ssh_host: str | None = None
    ssh_port: int | None = None
    endpoint_error: str | None = None


def parse_pod(raw: dict[str, Any]) -> Pod:
    """Build a :class:`Pod` from one entry of the GraphQL ``myself.pods`` list.

    ``env`` arrives as ``["KEY=value", ...]``. The SSH endpoint is the ``runtime.ports``
    entry with ``privatePort == 22`` and ``isIpPublic``; ``runtime`` is null while the pod
    starts and the mapping changes when the pod is reset.
    """
    env: dict[str, str] = {}
    for item in raw.get("env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    endpoint: dict[str, Any] = {}
    for mapping in (raw.get("runtime") or {}).get("ports") or []:
        if mapping.get("privatePort") == 22 and mapping.get("isIpPublic") and mapping.get("publicPort"):
            endpoint = _ssh_endpoint(mapping.get("ip"), mapping["publicPort"])
            break
    return Pod(
        id=check_pod_id(raw.get("id")),
        name=str(raw.get("name") or ""),
        desired_status=str(raw.get("desiredStatus") or ""),
        env=env,
        **endpoint,
    )


def _ssh_endpoint(ip: object, port: object) -> dict[str, Any]:
    """``ssh_host`` and ``ssh_port`` of a port-22 mapping, checked before they reach ssh; or its ``endpoint_error``."""
    try:
        address = ipaddress.ip_address(str(ip))
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"{address} is not a host address")
        number = int(str(port), 10)
        if not 1 <= number <= 65535:
            raise ValueError(f"port {number} is not in 1-65535")
    except ValueError as exc:
        return {"endpoint_error": f"unusable SSH mapping ip={ip!r} port={port!r}: {exc}"}
    return {"ssh_host": str(address), "ssh_port": number}


class RunPodClient:
    """The three RunPod calls the provider makes, each bounded by ``timeout_s``.

    Args:
        api_key: the RunPod API key. Sent only in the ``Authorization`` header.
        timeout_s: connect and read timeout of every HTTP request, in seconds.
    """

    def __init__(self, *, api_key: str, timeout_s: float) -> None:
        if not api_key:
            raise ValueError("api_key must be a non-empty string")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._api_key = api_key
        self._timeout_s = timeout_s

    def list_pods(self) -> list[Pod]:
        """Every pod of the account (the SDK's ``myPods`` query)."""
        data = self._graphql(QUERY_POD, what="list pods")
        try:
            raw_pods = data["myself"]["pods"]
        except (KeyError, TypeError):
            raise RunPodAPIError("RunPod API: list pods answered without myself.pods") from None
        if not isinstance(raw_pods, list):  # never read as "no pods": a listed pod would stop being terminated
            raise RunPodAPIError(f"RunPod API: list pods answered myself.pods = {raw_pods!r}, not a list")
        pods = []
        for raw in raw_pods:
            try:
                pods.append(parse_pod(raw))
            except ValueError as exc:  # not a pod this provider could have made
                logger.warning("RunPod API: skipping a pod: %s", exc)
        return pods

    def create_pod(self, body: dict[str, Any]) -> str:
        """Create one pod through ``POST /pods`` and return its id.

        Args:
            body: the REST ``PodCreateInput``, JSON-encoded as is.
        """
        answer = self._post(_rest_base() + "/pods", body, what="create pod")
        try:
            return check_pod_id(answer.get("id"))
        except (AttributeError, ValueError):
            raise RunPodAPIError("RunPod API: create pod answered without a valid pod id") from None

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate a pod (the SDK's ``podTerminate`` mutation)."""
        query = generate_pod_terminate_mutation(check_pod_id(pod_id))
        self._graphql(query, what=f"terminate pod {pod_id}")

    def _graphql(self, query: str, *, what: str) -> dict[str, Any]:
        answer = self._post(_graphql_base() + "/graphql", {"query": query}, what=what)
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
            raise RunPodAPIError(f"RunPod API: {what} failed: {self._redact(str(message))}")
        data = answer.get("data") if isinstance(answer, dict) else None
        return data if isinstance(data, dict) else {}

    def _post(self, url: str, payload: dict[str, Any], *, what: str) -> Any:
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        logger.debug("RunPod API: %s (POST %s)", what, url)
        try:
            response = requests.post(url, data=json.dumps(payload), headers=headers, timeout=self._timeout_s)
        except requests.Timeout:
            raise RunPodAPIError(
                f"RunPod API: {what} timed out after {self._timeout_s:g} s (POST {url})"
            ) from None
        except requests.RequestException as exc:
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            raise RunPodAPIError(f"RunPod API: {what} failed (POST {url}): {detail}") from None
        if response.status_code in (401, 403):
            raise RunPodAPIError(
                f"RunPod API: {what} was refused (HTTP {response.status_code}); "
                "check that RUNPOD_API_KEY holds a valid key with read/write access to pods"
            )
        if response.status_code >= 400:
            detail = self._redact(response.text[:300])
            raise RunPodAPIError(f"RunPod API: {what} failed (HTTP {response.status_code}): {detail}")
        try:
            return response.json()
        except ValueError:
            raise RunPodAPIError(f"RunPod API: {what} answered non-JSON (POST {url})") from None

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "<api key>")


def _graphql_base() -> str:
    """Re-read on every call, as the SDK does."""
    return os.environ.get(GRAPHQL_BASE_ENV, DEFAULT_GRAPHQL_BASE).rstrip("/")


def _rest_base() -> str:
    return os.environ.get(REST_BASE_ENV, DEFAULT_REST_BASE).rstrip("/")
