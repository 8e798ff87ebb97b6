"""pipeline: stylebatch's batch system (manifests, storage, Ray workers, results) and its CLI."""
