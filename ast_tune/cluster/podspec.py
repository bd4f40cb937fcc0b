"""A pod's shape, read from a Ray ``node_config`` and sent as RunPod's REST create body.

The YAML uses snake_case keys; each maps to one field of RunPod's ``PodCreateInput``
(``POST https://rest.runpod.io/v1/pods``). Unknown keys are errors. Ports are not
configurable: every pod exposes only ``22/tcp``, so no Ray port is ever public.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

SSH_PORTS = ("22/tcp",)
CLOUD_TYPES = ("SECURE", "COMMUNITY")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENV = {
    "AST_TUNE_RAY_TAGS": "the provider sets it",
    "RUNPOD_API_KEY": "API keys never go in YAML; the provider hands the head its key over SSH",
}

# snake_case node_config key -> RunPod REST field
_REST_NAMES = {
    "image_name": "imageName",
    "gpu_type_ids": "gpuTypeIds",
    "gpu_count": "gpuCount",
    "cloud_type": "cloudType",
    "container_disk_in_gb": "containerDiskInGb",
    "volume_in_gb": "volumeInGb",
    "volume_mount_path": "volumeMountPath",
    "network_volume_id": "networkVolumeId",
    "data_center_ids": "dataCenterIds",
    "min_vcpu_per_gpu": "minVCPUPerGPU",
    "min_ram_per_gpu": "minRAMPerGPU",
    "interruptible": "interruptible",
    "env": "env",
}


@dataclass(frozen=True)
class PodSpec:
    """One node type's pod.

    Attributes:
        image_name: container image; it must start sshd with ``$PUBLIC_KEY`` (RunPod's
            official ``runpod/pytorch`` images do).
        gpu_type_ids: acceptable RunPod GPU type ids, e.g. ``["NVIDIA H100 80GB HBM3"]``.
        gpu_count: GPUs per pod.
        cloud_type: ``SECURE`` or ``COMMUNITY``; Global Networking needs ``SECURE``.
        container_disk_in_gb: container disk, in GB (wiped when the pod restarts).
        volume_in_gb: pod volume, in GB; 0 for none.
        volume_mount_path: where the pod or network volume is mounted.
        network_volume_id: a network volume to mount (pins the pod to its data center).
        data_center_ids: acceptable data centers; empty for any.
        min_vcpu_per_gpu: minimum vCPUs per GPU.
        min_ram_per_gpu: minimum RAM per GPU, in GB.
        interruptible: rent a spot pod (cheaper; RunPod may stop it at any time).
        env: extra environment variables.
    """

    image_name: str
    gpu_type_ids: tuple[str, ...]
    gpu_count: int = 1
    cloud_type: str = "SECURE"
    container_disk_in_gb: int = 50
    volume_in_gb: int = 0
    volume_mount_path: str = "/workspace"
    network_volume_id: str | None = None
    data_center_ids: tuple[str, ...] = ()
    min_vcpu_per_gpu: int = 2
    min_ram_per_gpu: int = 8
    interruptible: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any], *, where: str) -> PodSpec:
        """Validate ``node_config`` and build the spec.

        Args:
            node_config: the ``node_config`` mapping of one node type.
            where: its key path, for error messages (``available_node_types.gpu8.node_config``).

        Raises:
            ValueError: naming the key path, what was given and what is allowed.
        """
        unknown = sorted(set(node_config) - set(_REST_NAMES))
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(_REST_NAMES)}")
        for required in ("image_name", "gpu_type_ids"):
            if required not in node_config:
                raise ValueError(f"{where}.{required}: required")
        values = {}
        for spec_field in fields(cls):
            if spec_field.name in node_config:
                values[spec_field.name] = _checked(spec_field.name, node_config[spec_field.name], where)
        return cls(**values)

    def rest_body(self, *, name: str, extra_env: dict[str, str], global_networking: bool) -> dict[str, Any]:
        """The ``PodCreateInput`` JSON for one pod; every value is JSON-encoded, never spliced.

        Args:
            name: pod name (at most 191 characters).
            extra_env: variables the provider adds (tags, SSH key); they win over ``env``.
            global_networking: give the pod a private IP reachable from the account's other pods.
        """
        body: dict[str, Any] = {"name": name, "ports": list(SSH_PORTS), "globalNetworking": global_networking}
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if value is None or value == ():
                continue
            body[_REST_NAMES[spec_field.name]] = list(value) if isinstance(value, tuple) else value
        body["env"] = {**self.env, **extra_env}
        return body


def _checked(key: str, value: Any, where: str) -> Any:
    path = f"{where}.{key}"
    if key in ("gpu_type_ids", "data_center_ids"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{path}: must be a list of non-empty strings, got {value!r}")
        if key == "gpu_type_ids" and not value:
            raise ValueError(f"{path}: must name at least one GPU type")
        return tuple(value)
    if key == "cloud_type":
        if value not in CLOUD_TYPES:
            raise ValueError(f"{path}: must be one of {', '.join(CLOUD_TYPES)}, got {value!r}")
        return value
    if key == "interruptible":
        if not isinstance(value, bool):
            raise ValueError(f"{path}: must be true or false, got {value!r}")
        return value
    if key == "env":
        return _checked_env(value, path)
    if key in ("image_name", "volume_mount_path", "network_volume_id"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{path}: must be a non-empty string, got {value!r}")
        return value
    lowest = 1 if key == "gpu_count" else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{path}: must be an integer >= {lowest}, got {value!r}")
    return value


def _checked_env(env: Any, path: str) -> dict[str, str]:
    if not isinstance(env, dict):
        raise ValueError(f"{path}: must be a mapping of NAME: value, got {env!r}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{path}.{name}: not a valid environment variable name")
        if name in _RESERVED_ENV:
            raise ValueError(f"{path}.{name}: reserved ({_RESERVED_ENV[name]}); remove it")
        if not isinstance(value, str):
            raise ValueError(f"{path}.{name}: must be a string, got {value!r}")
    return dict(env)
