"""Ray clusters on RunPod: a node provider for ``ray up`` (see ``docs/clusters.md``).

- :mod:`ast_tune.cluster.runpod`: ``RunPodNodeProvider``, named by ``clusters/runpod.yaml``.
- :mod:`ast_tune.cluster.ssh`: the SSH command runner that follows a pod's mapped port.
- :mod:`ast_tune.cluster.api`: the bounded-time RunPod API client.
- :mod:`ast_tune.cluster.podspec`: a ``node_config`` checked and turned into a create request.
- :mod:`ast_tune.cluster.tags`: Ray's node tags kept in a pod's environment.

Nothing here is imported by the training or sweep code; Ray imports the provider by name.
"""
