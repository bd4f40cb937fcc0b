"""Where runs train: the Ray session and its cleanup, resources, the DDP rendezvous, the worker, the baseline."""
