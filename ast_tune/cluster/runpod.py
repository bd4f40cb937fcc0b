"""A Ray node provider for RunPod pods, for ``ray up`` (``provider: {type: external, ...}``).

How Ray's ``NodeProvider`` maps onto RunPod:

- ``create_node``: one REST ``POST /pods`` per node. The pod is named after Ray's node-name
  tag (``ray-<cluster>-head``), exposes only ``22/tcp``, gets ``globalNetworking`` when the
  provider asks for it, and carries the launch-time tags in ``AST_TUNE_RAY_TAGS`` (see
  :mod:`ast_tune.cluster.tags`).
- ``non_terminated_nodes``: one GraphQL list of the account's pods, kept if their tags name
  this cluster (its name and its ``cluster_id``: a digest of ``auth``'s public key, set by
  ``bootstrap_config``) and they are not ``TERMINATED``. The result is cached for the
  single-node calls; an answer that is not a list of pods is an error and keeps the cache.
- ``node_tags``: the launch-time tags plus the ones Ray set since, kept in memory.
- ``external_ip``: the public IP of the port-22 mapping (checked with :mod:`ipaddress`); None
  until the pod has one. A mapping that does not parse keeps the pod listed and makes SSH to it an error.
- ``internal_ip``: ``<pod id>.runpod.internal`` with Global Networking, else ``external_ip``.
- ``terminate_node``: GraphQL ``podTerminate``.
- ``get_command_runner``: :class:`~ast_tune.cluster.ssh.RunPodCommandRunner`.

The API key comes from ``RUNPOD_API_KEY`` on the machine running ``ray up``. The head gets it
over SSH into ``~/.ast_tune/runpod_api_key`` (mode 600) and its provider reads that file:
inside a pod, RunPod sets ``RUNPOD_API_KEY`` to a key scoped to that one pod.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

from ast_tune.cluster.api import Pod, RunPodAPIError, RunPodClient
from ast_tune.cluster.podspec import PodSpec
from ast_tune.cluster.ssh import RunPodCommandRunner, public_key
from ast_tune.cluster.tags import (
    CLUSTER_ID_TAG,
    TAGS_ENV,
    check_cluster_id,
    check_cluster_name,
    cluster_id,
    decode_tags,
    encode_tags,
    matches,
)

logger = logging.getLogger(__name__)

API_KEY_ENV = "RUNPOD_API_KEY"
HEAD_API_KEY_FILE = "~/.ast_tune/runpod_api_key"
_RAY_PROVIDER_KEYS = ("type", "module", "use_internal_ips", "use_external_head_ip")


@dataclass(frozen=True)
class ProviderSettings:
    """The ``provider:`` section of a RunPod cluster YAML.

    Attributes:
        global_networking: give every pod a private IP on all ports, so workers can join the
            head (~100 Mbps between pods; secure cloud only).
        api_timeout_s: connect and read timeout of each RunPod API request, in seconds.
        poll_interval_s: wait between API polls for a new pod's SSH port, in seconds.
        ssh_wait_s: how long a pod may take to expose its SSH port, in seconds.
        api_key_file: where the API key is read from instead of ``RUNPOD_API_KEY``. Set on
            the head by :meth:`RunPodNodeProvider.prepare_for_head_node`; leave it unset.
        cluster_id: the tag that tells this cluster's pods from others' of the same name
            (:func:`~ast_tune.cluster.tags.cluster_id`). Set by
            :meth:`RunPodNodeProvider.bootstrap_config`; leave it unset.
    """

    global_networking: bool = False
    api_timeout_s: float = 30.0
    poll_interval_s: float = 5.0
    ssh_wait_s: float = 900.0
    api_key_file: str | None = None
    cluster_id: str | None = None

    @classmethod
    def from_provider_config(cls, config: dict[str, Any]) -> ProviderSettings:
        """Validate the provider section; errors name ``provider.<key>`` and the allowed keys."""
        if "api_key" in config:
            raise ValueError(f"provider.api_key: not allowed; export {API_KEY_ENV} instead")
        ours = [f.name for f in fields(cls)]
        for key in config:
            if key not in ours and key not in _RAY_PROVIDER_KEYS and not key.startswith("_"):
                raise ValueError(f"provider.{key}: unknown key; allowed: {', '.join(ours)}")
        values = {key: config[key] for key in ours if key in config}
        if not isinstance(values.get("global_networking", False), bool):
            raise ValueError("provider.global_networking: must be true or false")
        for key in ("api_timeout_s", "poll_interval_s", "ssh_wait_s"):
            value = values.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"provider.{key}: must be a number of seconds > 0, got {value!r}")
        if values.get("cluster_id") is not None:
            check_cluster_id(values["cluster_id"])
        return cls(**values)


class RunPodNodeProvider(NodeProvider):
    """Ray ``NodeProvider`` for RunPod pods; see the module docstring for the mapping."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        check_cluster_name(cluster_name)
        self._settings = ProviderSettings.from_provider_config(provider_config)
        self._cluster_id = check_cluster_id(self._settings.cluster_id)  # None: the config was not bootstrapped
        self._client = RunPodClient(api_key=self._api_key(), timeout_s=self._settings.api_timeout_s)
        self._lock = threading.Lock()
        self._pods: dict[str, Pod] = {}
        self._later_tags: dict[str, dict[str, str]] = {}

    # ---- listing and tags ----------------------------------------------------------------
    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        return [pod_id for pod_id in self._refresh() if matches(self.node_tags(pod_id), tag_filters)]

    def node_tags(self, node_id: str) -> dict[str, str]:
        pod = self._pod(node_id)
        with self._lock:
            later = dict(self._later_tags.get(node_id, {}))
        tags = decode_tags(pod.env.get(TAGS_ENV, "")) if pod else {}
        return {**tags, **later}

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        with self._lock:
            self._later_tags.setdefault(node_id, {}).update(tags)

    def is_running(self, node_id: str) -> bool:
        pod = self._pod(node_id)
        return pod is not None and pod.desired_status == "RUNNING" and pod.ssh_port is not None

    def is_terminated(self, node_id: str) -> bool:
        pod = self._pod(node_id)
        return pod is None or pod.desired_status == "TERMINATED"

    def external_ip(self, node_id: str) -> str | None:
        endpoint = self.ssh_endpoint(node_id, internal=False)
        return endpoint[0] if endpoint else None

    def internal_ip(self, node_id: str) -> str | None:
        endpoint = self.ssh_endpoint(node_id, internal=True)
        return endpoint[0] if endpoint else None

    # ---- SSH endpoint --------------------------------------------------------------------
    def ssh_endpoint(self, node_id: str, *, internal: bool) -> tuple[str, int] | None:
        """Where to reach the pod's sshd: ``(host, port)``, or None while it is unknown.

        Args:
            node_id: the pod id.
            internal: from another pod of the cluster (Global Networking: the private name
                on port 22) rather than from outside (the public IP and mapped port).
        """
        if internal and self._settings.global_networking:
            return f"{node_id}.runpod.internal", 22
        pod = self._pod(node_id)
        if pod is not None and pod.ssh_port is None:
            self._refresh()
            pod = self._pod(node_id)
        if pod is None or pod.ssh_host is None or pod.ssh_port is None:
            return None
        return pod.ssh_host, pod.ssh_port

    def wait_for_ssh_endpoint(self, node_id: str, *, internal: bool) -> tuple[str, int]:
        """Poll the API until the pod has an SSH endpoint (see :meth:`ssh_endpoint`).

        Raises:
            RunPodAPIError: if the pod is gone or has no endpoint after ``ssh_wait_s``.
        """
        deadline = time.monotonic() + self._settings.ssh_wait_s
        while True:
            endpoint = self.ssh_endpoint(node_id, internal=internal)
            if endpoint is not None:
                return endpoint
            pod = self._pod(node_id)
            if pod is not None and pod.endpoint_error:
                raise RunPodAPIError(f"pod {node_id}: {pod.endpoint_error}")
            if self.is_terminated(node_id):
                raise RunPodAPIError(f"pod {node_id} was terminated before it exposed SSH")
            if time.monotonic() >= deadline:
                raise RunPodAPIError(
                    f"pod {node_id} exposed no public SSH port within {self._settings.ssh_wait_s:g} s"
                )
            time.sleep(self._settings.poll_interval_s)

    # ---- create and terminate ------------------------------------------------------------
    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        node_type = tags.get(TAG_RAY_USER_NODE_TYPE, "?")
        spec = PodSpec.from_node_config(node_config, where=f"available_node_types.{node_type}.node_config")
        launch_tags = {**tags, TAG_RAY_CLUSTER_NAME: self.cluster_name, CLUSTER_ID_TAG: self._cluster_id}
        name = tags.get(TAG_RAY_NODE_NAME, f"ray-{self.cluster_name}")
        body = spec.rest_body(
            name=name,
            extra_env={TAGS_ENV: encode_tags(launch_tags)},
            global_networking=self._settings.global_networking,
        )
        created = {}
        for _ in range(count):
            pod_id = self._client.create_pod(body)
            gpus = f"{spec.gpu_count} x {spec.gpu_type_ids[0]}"
            logger.info("RunPod: created pod %s (%s, %s)", pod_id, name, gpus)
            created[pod_id] = {"name": name}
        return created

    def terminate_node(self, node_id: str) -> None:
        self._client.terminate_pod(node_id)
        logger.info("RunPod: terminated pod %s", node_id)
        with self._lock:
            self._pods.pop(node_id, None)
            self._later_tags.pop(node_id, None)

    # ---- hooks for ray up ----------------------------------------------------------------
    def get_command_runner(
        self,
        log_prefix: str,
        node_id: str,
        auth_config: dict[str, Any],
        cluster_name: str,
        process_runner: Any,
        use_internal_ip: bool,
        docker_config: dict[str, Any] | None = None,
    ) -> RunPodCommandRunner:
        if docker_config and docker_config.get("container_name"):
            raise ValueError("docker: not supported on RunPod (a pod is already a container); remove it")
        on_head = self._settings.api_key_file is not None
        return RunPodCommandRunner(
            api_key_source=None if on_head else self._api_key,
            api_key_path=HEAD_API_KEY_FILE,
            log_prefix=log_prefix,
            node_id=node_id,
            provider=self,
            auth_config=auth_config,
            cluster_name=cluster_name,
            process_runner=process_runner,
            use_internal_ip=use_internal_ip,
        )

    @staticmethod
    def bootstrap_config(cluster_config: dict[str, Any]) -> dict[str, Any]:
        """Check every node type, give each pod the SSH public key of ``auth`` and tag the cluster by it."""
        config = copy.deepcopy(cluster_config)
        settings = ProviderSettings.from_provider_config(config["provider"])
        key = public_key(config.get("auth", {}))
        config["provider"]["cluster_id"] = cluster_id(key)
        for name, node_type in config["available_node_types"].items():
            where = f"available_node_types.{name}.node_config"
            spec = PodSpec.from_node_config(node_type["node_config"], where=where)
            if settings.global_networking and spec.cloud_type != "SECURE":
                raise ValueError(f"{where}.cloud_type: provider.global_networking needs SECURE")
            node_type["node_config"].setdefault("env", {})["PUBLIC_KEY"] = key
        return config

    def prepare_for_head_node(self, cluster_config: dict[str, Any]) -> dict[str, Any]:
        """The head's provider reads the key from the file :meth:`run_init` writes there."""
        config = copy.deepcopy(cluster_config)
        config["provider"]["api_key_file"] = HEAD_API_KEY_FILE
        return config

    # ---- internals -----------------------------------------------------------------------
    def _api_key(self) -> str:
        path = self._settings.api_key_file
        if path is not None:
            try:
                with open(os.path.expanduser(path)) as handle:
                    key = handle.read().strip()
            except OSError as exc:
                raise RunPodAPIError(f"provider.api_key_file: cannot read {path}: {exc.strerror}") from None
        else:
            key = os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise RunPodAPIError(
                f"no RunPod API key: export {API_KEY_ENV} (console.runpod.io > Settings > API Keys)"
            )
        return key

    def _refresh(self) -> list[str]:
        """List the account's pods; keep and cache this cluster's live ones."""
        ours = {}
        for pod in self._client.list_pods():
            tags = decode_tags(pod.env.get(TAGS_ENV, ""))
            mine = tags.get(TAG_RAY_CLUSTER_NAME) == self.cluster_name and tags.get(CLUSTER_ID_TAG) == self._cluster_id
            if mine and pod.desired_status != "TERMINATED":
                ours[pod.id] = pod
        with self._lock:
            self._pods = ours
        return list(ours)

    def _pod(self, node_id: str) -> Pod | None:
        with self._lock:
            pod = self._pods.get(node_id)
        if pod is None:
            self._refresh()
            with self._lock:
                pod = self._pods.get(node_id)
        return pod
