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
alone. The key goes through ssh's standard input: never into an argument, a YAML or a log.
"""

from __future__ import annotations

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
        """Write ``secret`` to ``remote_path`` (mode 600) through ssh's standard input."""
        host = self._get_ssh_target()
        quoted = shlex.quote(remote_path.removeprefix("~/"))
        script = f'umask 077 && cd ~ && mkdir -p "$(dirname {quoted})" && cat > {quoted}'
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
