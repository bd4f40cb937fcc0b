"""The cluster YAMLs: Ray's own validation, no secrets, no public Ray port. Offline; no Ray started."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from fake_runpod import RecordingProcessRunner, serving, ssh_options_of
from ray.autoscaler._private import commands
from ray.autoscaler._private.providers import _get_node_provider_cls
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.v2.instance_manager.config import FileConfigReader
from ray.autoscaler.v2.instance_manager.node_provider import NodeProviderAdapter

from ast_tune.cluster.podspec import PodSpec
from ast_tune.cluster.runpod import HEAD_API_KEY_FILE, ProviderSettings, RunPodNodeProvider
from ast_tune.cluster.tags import cluster_id

CLUSTERS = Path(__file__).resolve().parent.parent / "clusters"
YAMLS = ["runpod.yaml", "runpod-instant.yaml", "local.yaml"]
SECRET_WORDS = ("key", "token", "secret", "password")
API_KEY = "rpa_FAKE0123456789abcdefKEY"  # a made-up key; must never leak


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def with_tmp_ssh_key(config: dict, tmp_path: Path) -> dict:
    """The config with ``auth`` pointing at a throw-away key pair under ``tmp_path``."""
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    Path(f"{private}.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest test@host\n")
    config = copy.deepcopy(config)
    config["auth"]["ssh_private_key"] = str(private)
    return config


def start_commands(config: dict) -> list[str]:
    return config.get("head_start_ray_commands", []) + config.get("worker_start_ray_commands", [])


@pytest.mark.parametrize("name", YAMLS)
def test_cluster_yaml_passes_rays_own_validation(name: str, tmp_path: Path) -> None:
    prepared = prepare_config(load(name))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    provider_cls = _get_node_provider_cls(prepared["provider"])
    if prepared["provider"]["type"] == "external":
        assert provider_cls is RunPodNodeProvider  # the module path imports
        bootstrapped = provider_cls.bootstrap_config(with_tmp_ssh_key(prepared, tmp_path))
        validate_config(bootstrapped)


def test_runpod_pods_get_the_auth_public_key_and_expose_only_ssh(tmp_path: Path) -> None:
    config = prepare_config(load("runpod.yaml"))
    settings = ProviderSettings.from_provider_config(config["provider"])
    bootstrapped = RunPodNodeProvider.bootstrap_config(with_tmp_ssh_key(config, tmp_path))
    for name, node_type in bootstrapped["available_node_types"].items():
        spec = PodSpec.from_node_config(node_type["node_config"], where=name)
        body = spec.rest_body(name="n", extra_env={}, global_networking=settings.global_networking)
        assert body["ports"] == ["22/tcp"]
        assert body["env"]["PUBLIC_KEY"].startswith("ssh-ed25519 AAAAC3")
        assert body["globalNetworking"] is True and body["cloudType"] == "SECURE"
    public = Path(bootstrapped["auth"]["ssh_private_key"] + ".pub").read_text()
    assert bootstrapped["provider"]["cluster_id"] == cluster_id(public) and len(cluster_id(public)) == 16


@pytest.mark.parametrize("name", YAMLS)
def test_each_cluster_uses_a_key_made_for_it_not_a_personal_one(name: str) -> None:
    key = load(name)["auth"]["ssh_private_key"]
    assert key.startswith("~/.ssh/ast-tune-") and not re.search(r"id_(rsa|ed25519|ecdsa)$", key)
    assert f"ssh-keygen -t ed25519 -N '' -f {key}" in (CLUSTERS / name).read_text()


def test_bootstrap_without_a_public_key_names_the_auth_key(tmp_path: Path) -> None:
    config = prepare_config(load("runpod.yaml"))
    config["auth"]["ssh_private_key"] = str(tmp_path / "missing_key")
    with pytest.raises(ValueError, match="auth: cannot read the public key"):
        RunPodNodeProvider.bootstrap_config(config)


@pytest.mark.parametrize("name", YAMLS)
def test_cluster_yaml_carries_no_literal_secret(name: str) -> None:
    text = (CLUSTERS / name).read_text()
    assert not re.search(r"rpa_[A-Za-z0-9]{8,}", text)  # RunPod API key
    assert not re.search(r"\b[A-Z0-9]{32,}\b", text)  # older RunPod key shape
    assert "RUNPOD_API_KEY=" not in text and "RAY_AUTH_TOKEN=" not in text
    config = load(name)
    assert "api_key" not in config["provider"]

    def check(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if any(word in str(key).lower() for word in SECRET_WORDS) and isinstance(value, str):
                    assert value.startswith(("~", "/", "./")), f"{path}.{key} holds a value, not a path"
                check(value, f"{path}.{key}")
        elif isinstance(node, list):
            for item in node:
                check(item, path)

    check(config, name)


@pytest.mark.parametrize("name", YAMLS)
def test_ray_listens_on_no_public_port_and_requires_the_token(name: str) -> None:
    config = load(name)
    head_starts = [cmd for cmd in config["head_start_ray_commands"] if "ray start" in cmd]
    assert head_starts and all("--dashboard-host=127.0.0.1" in cmd for cmd in head_starts)
    ray_starts = [cmd for cmd in start_commands(config) if "ray start" in cmd]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in ray_starts)
    assert not any("0.0.0.0" in cmd for cmd in start_commands(config))
    for node_type in config.get("available_node_types", {}).values():
        assert "ports" not in node_type["node_config"]  # the provider exposes 22/tcp only


def test_ray_up_head_path_for_runpod_yaml_runs_against_the_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ray up``'s own head code, with ssh and rsync recorded instead of run."""
    config = with_tmp_ssh_key(load("runpod.yaml"), tmp_path)
    config["provider"]["poll_interval_s"] = 0.01  # seconds
    (tmp_path / "auth_token").write_text("made-up-token")
    config["file_mounts"]["~/.ray/auth_token"] = str(tmp_path / "auth_token")
    monkeypatch.chdir(CLUSTERS.parent)  # file_mounts are relative to the repository root
    head_configs = []

    def keep_head_config(*args: object):
        config, handle = set_up(*args)
        head_configs.append(Path(handle.name).read_text())
        return config, handle

    set_up = commands._set_up_config_for_head_node
    monkeypatch.setattr(commands, "_set_up_config_for_head_node", keep_head_config)
    recorder = RecordingProcessRunner()
    with serving(monkeypatch, api_key=API_KEY) as api:
        config = commands._bootstrap_config(config, no_config_cache=True)
        commands.get_or_create_head_node(
            config, "clusters/runpod.yaml", no_restart=False, restart_only=False, yes=True,
            override_cluster_name=None, _runner=recorder,
        )
    (pod,) = api.pods.values()
    port = pod["public_port"]
    assert pod["body"]["name"] == "ray-ast-tune-head" and pod["body"]["ports"] == ["22/tcp"]
    assert all(f"Port={port}" in ssh_options_of(argv) for argv, _ in recorder.calls)
    assert any("ray start --head" in argv[-1] for argv, _ in recorder.calls)
    assert [stdin for _, stdin in recorder.calls if stdin] == [API_KEY.encode()]
    assert all(API_KEY not in " ".join(argv) for argv, _ in recorder.calls)
    (head_config,) = head_configs
    assert HEAD_API_KEY_FILE in head_config and API_KEY not in head_config


def test_autoscaler_v2_sees_launched_workers_with_their_type_and_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head's autoscaler v2 wraps the provider in NodeProviderAdapter; launch through it."""
    with serving(monkeypatch, api_key=API_KEY):
        config = with_tmp_ssh_key(load("runpod.yaml"), tmp_path)
        config = commands._bootstrap_config(config, no_config_cache=True)
        (tmp_path / "bootstrap.yaml").write_text(json.dumps(config))
        provider = RunPodNodeProvider(config["provider"], config["cluster_name"])
        adapter = NodeProviderAdapter(provider, FileConfigReader(str(tmp_path / "bootstrap.yaml")))
        adapter.launch({"gpu8": 2}, "request-1")
        for _ in range(200):  # launches run on the adapter's threads
            instances = adapter.get_non_terminated()
            if len(instances) == 2:
                break
            time.sleep(0.02)
    assert adapter.poll_errors() == []
    assert [(i.node_type, i.request_id) for i in instances.values()] == [("gpu8", "request-1")] * 2


@pytest.mark.parametrize(
    ("node_config", "message"),
    [
        ({"image_name": "img", "gpu_typ": ["A"]}, r"node_config\.gpu_typ: unknown key; allowed: image_name"),
        ({"image_name": "img", "gpu_type_ids": ["A"], "ports": ["8265/http"]}, r"\.ports: unknown key"),
        ({"image_name": "i", "gpu_type_ids": ["A"], "gpu_count": 0}, r"\.gpu_count: must be an integer >= 1"),
        ({"image_name": "img", "gpu_type_ids": ["A"], "cloud_type": "ANY"}, r"\.cloud_type: must be one of"),
    ],
)
def test_bad_node_config_is_an_error_naming_the_key(node_config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PodSpec.from_node_config(node_config, where="available_node_types.gpu8.node_config")
