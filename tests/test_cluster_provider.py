"""RunPodNodeProvider and its SSH runner against a stand-in RunPod API on 127.0.0.1.

No test here starts Ray or reaches beyond 127.0.0.1; ssh and rsync are recorded, not run.
"""

from __future__ import annotations

import logging
import subprocess

import pytest
from fake_runpod import FakeRunPod, RecordingProcessRunner, serving, ssh_options_of
from ray.autoscaler._private.updater import NodeUpdater
from ray.autoscaler.tags import (
    STATUS_UP_TO_DATE,
    TAG_RAY_CLUSTER_NAME,
    TAG_RAY_LAUNCH_CONFIG,
    TAG_RAY_LAUNCH_REQUEST,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from ast_tune.cluster.api import RunPodAPIError
from ast_tune.cluster.runpod import HEAD_API_KEY_FILE, RunPodNodeProvider
from ast_tune.cluster.ssh import secret_script
from ast_tune.cluster.tags import cluster_id

API_KEY = "rpa_FAKE0123456789abcdefKEY"  # a made-up key; must never leak
CLUSTER = "unit"
CLUSTER_ID = cluster_id(NODE_PUBLIC_KEY := "ssh-ed25519 AAAAtest user@host")
NODE_CONFIG = {
    "image_name": "runpod/pytorch:test",
    "gpu_type_ids": ["NVIDIA H100 80GB HBM3"],
    "gpu_count": 8,
    "env": {"PUBLIC_KEY": NODE_PUBLIC_KEY},
}


def provider_config(**overrides: object) -> dict:
    config = {
        "type": "external",
        "module": "ast_tune.cluster.runpod.RunPodNodeProvider",
        "global_networking": True,
        "api_timeout_s": 2,  # seconds per request
        "poll_interval_s": 0.01,  # seconds between polls for the SSH port
        "ssh_wait_s": 5,
        "cluster_id": CLUSTER_ID,  # what bootstrap_config sets from auth's public key
    }
    config.update(overrides)
    return config


def head_tags() -> dict[str, str]:
    return {
        TAG_RAY_NODE_KIND: "head",
        TAG_RAY_USER_NODE_TYPE: "head",
        TAG_RAY_NODE_NAME: f"ray-{CLUSTER}-head",
        TAG_RAY_LAUNCH_CONFIG: "3aajcrc3rsg08tv2",
        TAG_RAY_NODE_STATUS: "uninitialized",
    }


def worker_tags() -> dict[str, str]:
    return {
        TAG_RAY_NODE_KIND: "worker",
        TAG_RAY_USER_NODE_TYPE: "gpu8",
        TAG_RAY_NODE_NAME: f"ray-{CLUSTER}-worker",
        TAG_RAY_LAUNCH_REQUEST: "5f0c3c1e-8a4b-4e0e-9d55-0b2f4a6f7d21",
        TAG_RAY_NODE_STATUS: "uninitialized",
    }


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):
    with serving(monkeypatch, api_key=API_KEY) as server:
        yield server


# ---- lifecycle -------------------------------------------------------------------------------
def test_node_is_created_waits_for_its_ssh_port_lists_with_tags_and_terminates(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    created = provider.create_node(NODE_CONFIG, worker_tags(), 1)
    (pod_id,) = created

    assert provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "worker"}) == [pod_id]
    assert provider.external_ip(pod_id) is None  # runtime.ports is still null
    assert not provider.is_running(pod_id)

    host, port = provider.wait_for_ssh_endpoint(pod_id, internal=False)
    assert (host, port) == ("203.0.113.7", api.pods[pod_id]["public_port"])
    assert provider.is_running(pod_id)

    tags = provider.node_tags(pod_id)
    assert tags[TAG_RAY_USER_NODE_TYPE] == "gpu8"
    assert tags[TAG_RAY_LAUNCH_REQUEST] == worker_tags()[TAG_RAY_LAUNCH_REQUEST]
    assert tags[TAG_RAY_CLUSTER_NAME] == CLUSTER
    provider.set_node_tags(pod_id, {TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE})
    assert provider.non_terminated_nodes({TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE}) == [pod_id]
    assert provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "head"}) == []

    provider.terminate_node(pod_id)
    assert provider.non_terminated_nodes({}) == []
    assert provider.is_terminated(pod_id)


def test_create_body_is_json_with_global_networking_and_only_the_ssh_port(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    quoted = 'say "hi" } mutation { podTerminate'
    config = {**NODE_CONFIG, "env": {**NODE_CONFIG["env"], "GREETING": quoted}}
    (pod_id,) = provider.create_node(config, head_tags(), 1)

    body = api.pods[pod_id]["body"]
    assert body["globalNetworking"] is True
    assert body["ports"] == ["22/tcp"]
    assert body["gpuTypeIds"] == ["NVIDIA H100 80GB HBM3"] and body["gpuCount"] == 8
    assert body["env"]["GREETING"] == quoted  # encoded as JSON, arrives intact
    assert body["name"] == f"ray-{CLUSTER}-head"
    assert not any(path == "/graphql" and "GREETING" in text for path, text in api.requests)


def test_pod_id_with_a_quote_is_rejected_before_any_request(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    sent_before = len(api.requests)
    with pytest.raises(ValueError, match="pod id"):
        provider.terminate_node('abc" }) { podTerminate(input: {podId: "victim')
    assert len(api.requests) == sent_before


def test_cluster_name_with_a_quote_is_rejected(api: FakeRunPod) -> None:
    with pytest.raises(ValueError, match="cluster_name"):
        RunPodNodeProvider(provider_config(), 'x"y')


def test_pods_of_other_clusters_and_untagged_pods_are_ignored(api: FakeRunPod) -> None:
    api.add_pod(name="my-notebook", env={})
    api.add_pod(name="ray-other-head", env={"AST_TUNE_RAY_TAGS": "ray-cluster-name=other,ray-node-type=head"})
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (mine,) = provider.create_node(NODE_CONFIG, head_tags(), 1)
    assert provider.non_terminated_nodes({}) == [mine]


def test_a_namesake_cluster_of_another_user_on_the_same_account_is_never_touched(api: FakeRunPod) -> None:
    theirs = RunPodNodeProvider(provider_config(cluster_id=cluster_id("ssh-ed25519 AAAAother them@host")), CLUSTER)
    (their_pod,) = theirs.create_node(NODE_CONFIG, head_tags(), 1)
    mine = RunPodNodeProvider(provider_config(), CLUSTER)
    (my_pod,) = mine.create_node(NODE_CONFIG, head_tags(), 1)
    assert mine.non_terminated_nodes({}) == [my_pod] and theirs.non_terminated_nodes({}) == [their_pod]
    for pod_id in mine.non_terminated_nodes({}):  # what `ray down` does
        mine.terminate_node(pod_id)
    assert api.pods[their_pod]["desiredStatus"] == "RUNNING" and api.pods[my_pod]["desiredStatus"] == "TERMINATED"


def test_a_provider_without_a_cluster_id_is_refused(api: FakeRunPod) -> None:
    with pytest.raises(ValueError, match="provider.cluster_id"):
        RunPodNodeProvider(provider_config(cluster_id=None), CLUSTER)


def test_a_null_pod_list_is_an_error_that_keeps_the_pods_tracked(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, head_tags(), 1)
    assert provider.non_terminated_nodes({}) == [pod_id]
    api.pods_null = True
    with pytest.raises(RunPodAPIError, match="pods = None, not a list"):
        provider.non_terminated_nodes({})
    assert not provider.is_terminated(pod_id)  # still known: `ray down` will terminate it
    api.pods_null = False
    provider.terminate_node(pod_id)
    assert api.pods[pod_id]["desiredStatus"] == "TERMINATED"


@pytest.mark.parametrize(("ip", "port", "why"), [
    ("203.0.113.7; rm -rf ~", 40001, "does not appear to be an IPv4 or IPv6 address"),
    ("0.0.0.0", 40001, "not a host address"), ("203.0.113.7", "22x", "invalid literal"),
    ("203.0.113.7", 70000, "not in 1-65535"),
])
def test_an_unusable_ssh_mapping_keeps_the_pod_tracked_and_never_reaches_ssh(
    api: FakeRunPod, ip: object, port: object, why: str
) -> None:
    api.polls_before_ports = 0
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, worker_tags(), 1)
    api.ssh_mapping[pod_id] = (ip, port)
    recorder = RecordingProcessRunner()
    runner = provider.get_command_runner("", pod_id, {"ssh_user": "root"}, CLUSTER, recorder, False)
    with pytest.raises(RunPodAPIError, match=why):
        runner.run("uptime")
    assert recorder.calls == [] and provider.non_terminated_nodes({}) == [pod_id]
    assert provider.external_ip(pod_id) is None
    provider.terminate_node(pod_id)
    assert api.pods[pod_id]["desiredStatus"] == "TERMINATED"


def test_the_head_key_file_ends_mode_600_even_when_it_existed_wider(tmp_path) -> None:
    folder = tmp_path / ".ast_tune"
    folder.mkdir(mode=0o755)
    old = folder / "runpod_api_key"
    old.write_text("old key")
    old.chmod(0o644)
    subprocess.run(["bash", "-c", secret_script(HEAD_API_KEY_FILE)], input=b"new key", check=True,
                   env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert old.read_text() == "new key"
    assert old.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700


# ---- failures ------------------------------------------------------------------------------
def test_slow_api_raises_a_timeout_error_instead_of_hanging(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(api_timeout_s=0.2), CLUSTER)
    api.delay_s = 1.5  # seconds; longer than the 0.2 s timeout
    with pytest.raises(RunPodAPIError, match=r"list pods timed out after 0.2 s"):
        provider.non_terminated_nodes({})


def test_failing_api_raises_an_error_naming_the_call_and_status(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    api.fail_status = 500
    with pytest.raises(RunPodAPIError, match=r"create pod failed \(HTTP 500\)"):
        provider.create_node(NODE_CONFIG, head_tags(), 1)


def test_api_key_never_appears_in_errors_or_logs(
    api: FakeRunPod, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = RunPodNodeProvider(provider_config(api_timeout_s=0.2), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, head_tags(), 1)
    messages = []
    api.fail_status = 500
    with pytest.raises(RunPodAPIError) as failed:
        provider.non_terminated_nodes({})
    messages.append(str(failed.value))
    api.fail_status, api.delay_s = None, 1.0
    with pytest.raises(RunPodAPIError) as slow:
        provider.terminate_node(pod_id)
    messages.append(str(slow.value))
    api.delay_s = 0.0
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY + "-wrong")
    with pytest.raises(RunPodAPIError, match="RUNPOD_API_KEY") as refused:
        RunPodNodeProvider(provider_config(), CLUSTER).non_terminated_nodes({})
    messages.append(str(refused.value))

    assert caplog.records, "the provider logged nothing to check"
    assert all(API_KEY not in text for text in messages + [r.getMessage() for r in caplog.records])


def test_missing_api_key_is_a_clear_error(api: FakeRunPod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(RunPodAPIError, match="export RUNPOD_API_KEY"):
        RunPodNodeProvider(provider_config(), CLUSTER)


def test_api_key_in_the_provider_config_is_refused(api: FakeRunPod) -> None:
    with pytest.raises(ValueError, match="provider.api_key: not allowed"):
        RunPodNodeProvider(provider_config(api_key=API_KEY), CLUSTER)


def test_head_provider_reads_the_key_file_not_the_pod_scoped_env_key(
    api: FakeRunPod, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    laptop = RunPodNodeProvider(provider_config(), CLUSTER)
    head_config = laptop.prepare_for_head_node({"provider": provider_config()})
    assert head_config["provider"]["api_key_file"] == HEAD_API_KEY_FILE
    key_file = tmp_path / "runpod_api_key"
    key_file.write_text(API_KEY + "\n")
    monkeypatch.setenv("RUNPOD_API_KEY", "pod-scoped-key")  # what RunPod sets inside a pod
    head = RunPodNodeProvider({**head_config["provider"], "api_key_file": str(key_file)}, CLUSTER)
    assert head.non_terminated_nodes({}) == []  # the stand-in accepted the file's key


# ---- SSH command runner --------------------------------------------------------------------
def test_every_ssh_and_rsync_of_a_head_update_uses_the_mapped_port(api: FakeRunPod, tmp_path) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, head_tags(), 1)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    recorder = RecordingProcessRunner()
    auth = {"ssh_user": "root", "ssh_private_key": str(tmp_path / "id_ed25519")}
    updater = NodeUpdater(
        node_id=pod_id,
        provider_config=provider_config(),
        provider=provider,
        auth_config=auth,
        cluster_name=CLUSTER,
        file_mounts={"~/pkg": str(tmp_path / "pkg")},
        initialization_commands=["echo init"],
        setup_commands=["echo setup"],
        ray_start_commands=["echo start"],
        runtime_hash="h1",
        file_mounts_contents_hash="h2",
        is_head_node=True,
        process_runner=recorder,
    )
    updater.run()

    port = api.pods[pod_id]["public_port"]
    commands = [argv for argv, _ in recorder.calls]
    assert provider.node_tags(pod_id)[TAG_RAY_NODE_STATUS] == STATUS_UP_TO_DATE
    assert {argv[0] for argv in commands} == {"ssh", "rsync"}
    assert any("echo init" in " ".join(argv) for argv in commands)
    assert all(f"Port={port}" in ssh_options_of(argv) for argv in commands)
    assert all("root@203.0.113.7" in " ".join(argv) for argv in commands)


def test_head_update_hands_over_the_api_key_through_stdin_only(api: FakeRunPod, tmp_path) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, head_tags(), 1)
    recorder = RecordingProcessRunner()
    runner = provider.get_command_runner("", pod_id, {"ssh_user": "root"}, CLUSTER, recorder, False)
    runner.run("uptime")
    runner.run_init(as_head=True, file_mounts={}, sync_run_yet=True)

    (argv, stdin), = [call for call in recorder.calls if call[1] is not None]
    assert stdin == API_KEY.encode()
    assert "umask 077" in argv[-1] and ".ast_tune/runpod_api_key" in argv[-1]
    assert all(API_KEY not in " ".join(argv) for argv, _ in recorder.calls)


def test_worker_on_global_networking_is_reached_on_port_22_of_its_private_name(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, worker_tags(), 1)
    recorder = RecordingProcessRunner()
    runner = provider.get_command_runner("", pod_id, {"ssh_user": "root"}, CLUSTER, recorder, True)
    runner.run("uptime")
    runner.run_init(as_head=False, file_mounts={}, sync_run_yet=True)

    (argv, _), = recorder.calls  # no key handed to a worker
    assert "Port=22" in ssh_options_of(argv)
    assert f"root@{pod_id}.runpod.internal" in argv


def test_runner_follows_the_new_port_after_a_pod_reset(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    (pod_id,) = provider.create_node(NODE_CONFIG, worker_tags(), 1)
    recorder = RecordingProcessRunner()
    runner = provider.get_command_runner("", pod_id, {"ssh_user": "root"}, CLUSTER, recorder, False)
    runner.run("uptime")
    old_port = api.pods[pod_id]["public_port"]
    api.reset_pod(pod_id)
    provider.non_terminated_nodes({})  # the autoscaler's regular refresh
    runner.run("uptime")

    first, second = (ssh_options_of(argv) for argv, _ in recorder.calls)
    assert f"Port={old_port}" in first and f"Port={old_port + 1000}" in second


def test_docker_section_is_refused(api: FakeRunPod) -> None:
    provider = RunPodNodeProvider(provider_config(), CLUSTER)
    with pytest.raises(ValueError, match="docker"):
        provider.get_command_runner("", "abc", {"ssh_user": "root"}, CLUSTER, subprocess, False,
                                    {"container_name": "ray"})
