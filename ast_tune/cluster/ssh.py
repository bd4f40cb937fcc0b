"""Ray's SSH command runner, taught RunPod's mapped SSH port.

A pod's sshd listens on port 22 inside the pod, but from outside it is reached on a public
port that RunPod maps (and re-maps when the pod resets). Ray's ``SSHCommandRunner`` has no
port setting, so this subclass asks the provider for the current endpoint before every
command and sets ``-o Port=<port>`` on the options every ssh and rsync is built from. Ray's
initialization commands build fresh options for an override key; :meth:`run` swaps in options
of our own for them, so they carry the port too.

From the head to a worker on Global Networking, the endpoint is ``<pod id>.runpod.internal``
on port 22.

On the head only, :meth:`run_init` writes the RunPod API key to a file readable by its owner
alone (:func:`secret_script`). The key goes through ssh's standard input: never into an argument,
a YAML or a log. :func:`public_key` reads the cluster key's public half that every pod trusts.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

from ray.autoscaler._private.command_runner import SSHCommandRunner, SSHOptions


class RunPodCommandRunner(SSHCommandRunner):
    """An ``SSHCommandRunner`` that follows the pod's SSH endpoint.

    Args:
        api_key_source: returns the API key to hand to the head; None on the head itself.
        api_key_path: where the head keeps the key (``~`` is the SSH user's home).
        **common_args: the arguments Ray passes to ``SSHCommandRunner``; ``provider`` must be
            a ``RunPodNodeProvider``.
    """

    def __init__(
        self,
        *,
        api_key_source: Callable[[], str] | None,
        api_key_path: str,
        **common_args: Any,
    ) -> None:
        super().__init__(**common_args)
        self._api_key_source = api_key_source
        self._api_key_path = api_key_path

    def _get_ssh_target(self) -> str:
        self._ensure_ssh_control_path()
        host, port = self.provider.wait_for_ssh_endpoint(self.node_id, internal=self.use_internal_ip)
        self.ssh_ip = host
        self.ssh_options.arg_dict["Port"] = str(port)
        return host

    def run(self, cmd: str | None = None, **kwargs: Any) -> Any:
        """Ray's ``run``; an ``ssh_options_override_ssh_key`` keeps the port and control path."""
        override_key = kwargs.pop("ssh_options_override_ssh_key", "")
        if not override_key:
            return super().run(cmd, **kwargs)
        saved = self.ssh_options
        self.ssh_options = SSHOptions(
            override_key, self.ssh_control_path, ProxyCommand=self.ssh_proxy_command
        )
        try:
            return super().run(cmd, **kwargs)
        finally:
            self.ssh_options = saved

    def run_init(self, *, as_head: bool, file_mounts: dict[str, str], sync_run_yet: bool) -> None:
        """On the head, hand over the RunPod API key (nothing to do on workers)."""
        if as_head and self._api_key_source is not None:
            self._write_secret(self._api_key_path, self._api_key_source())

    def _write_secret(self, remote_path: str, secret: str) -> None:
        """Write ``secret`` to ``remote_path`` (mode 600, its folder 700) through ssh's standard input."""
        host = self._get_ssh_target()
        script = secret_script(remote_path)
        command = ["ssh", *self.ssh_options.to_ssh_options_list(timeout=60)]
        command += [f"{self.ssh_user}@{host}", script]
        self.process_runner.run(
            command,
            input=secret.encode(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )


def secret_script(remote_path: str) -> str:
    """The shell script that stores its standard input at ``remote_path`` (``~/`` = the home), mode 600.

    A new file is written beside it and renamed over it, so an existing file of wider mode is
    replaced, not rewritten in place with its old mode; its folder is made mode 700.
    """
    path = remote_path.removeprefix("~/")
    quoted, folder, partial = shlex.quote(path), shlex.quote(os.path.dirname(path) or "."), shlex.quote(path + ".new")
    return (f"umask 077 && cd ~ && mkdir -p {folder} && chmod 700 {folder} && cat > {partial} "
            f"&& chmod 600 {partial} && mv -f {partial} {quoted}")


def public_key(auth: dict[str, Any]) -> str:
    """The text of ``auth.ssh_public_key``, or of ``auth.ssh_private_key`` + ``.pub``."""
    if "ssh_private_key" not in auth:
        raise ValueError("auth.ssh_private_key: required (its .pub is installed on every pod)")
    path = auth.get("ssh_public_key") or auth["ssh_private_key"] + ".pub"
    try:
        with open(os.path.expanduser(path)) as handle:
            key = handle.read().strip()
    except OSError:
        raise ValueError(
            f"auth: cannot read the public key {path}; make a key for this cluster with "
            f"ssh-keygen -t ed25519 -N '' -f {auth['ssh_private_key']}, or set auth.ssh_public_key"
        ) from None
    if not key.startswith(("ssh-", "ecdsa-", "sk-")) or "PRIVATE KEY" in key:
        raise ValueError(f"auth: {path} does not look like an OpenSSH public key")
    return key
