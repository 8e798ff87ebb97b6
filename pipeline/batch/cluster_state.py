"""Reading a running Ray cluster as planning data: its live nodes and what its autoscaler may add.

Ray 2.60 has no public API that tells a driver which nodes the autoscaler may launch, so the
node types come from, in this order:

1. the file named by STYLEBATCH_AUTOSCALING_CONFIG (an autoscaler config, YAML or JSON);
2. the cluster config that an autoscaler reports to the GCS (`ray._private.state.state.
   get_cluster_config()`, what Ray Data reads; KubeRay and autoscaler v2 deployments report it);
3. `~/ray_bootstrap_config.yaml`, the config `ray up` writes on the head node for the
   autoscaler it starts there (`--autoscaling-config`); Ray Tune and Ray's usage stats read
   the same file. A driver run on the head (`ray exec`, `ray attach`) finds it.

Without any of them the cluster's growth is unknown: planning then sizes the run to the
nodes present and says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.batch.planning import ClusterState, LiveNode, NodeType, Scaling

AUTOSCALING_CONFIG_ENV = "STYLEBATCH_AUTOSCALING_CONFIG"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
NODE_GROUP_LABEL = "ray.io/node-group"  # set by Ray from RAY_NODE_TYPE_NAME (KubeRay, fake multinode)
HEAD_RESOURCE = "node:__internal_head__"


def node_types_from_autoscaling_config(config: Mapping[str, Any]) -> tuple[tuple[NodeType, ...], int | None]:
    """Worker node types and the cluster-wide max_workers of an autoscaler (`ray up`) config.

    The head node type is left out (its one node is alive); a type's max_workers defaults to the
    cluster's, as in Ray. ValueError if a worker type does not declare its resources.
    """
    cluster_max = config.get("max_workers")
    head = config.get("head_node_type")
    node_types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        resources = spec.get("resources")
        if resources is None:
            raise ValueError(f"node type {name!r} declares no resources")
        maximum = spec.get("max_workers", cluster_max)
        node_types.append(NodeType(name, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)),
                                   None if maximum is None else int(maximum)))
    return tuple(node_types), None if cluster_max is None else int(cluster_max)


def node_types_from_gcs_config(config: Any) -> tuple[tuple[NodeType, ...], dict[str, float]]:
    """Node types and cluster-wide resource caps of a `ray.core.generated.autoscaler_pb2.ClusterConfig`.

    A max_count of -1 means no maximum.
    """
    node_types = tuple(NodeType(group.name, float(group.resources.get("CPU", 0)), float(group.resources.get("GPU", 0)),
                                None if group.max_count == -1 else int(group.max_count))
                       for group in config.node_group_configs)
    return node_types, {key: float(value) for key, value in config.max_resources.items()}


def live_nodes(ray_nodes: Iterable[Mapping[str, Any]]) -> tuple[LiveNode, ...]:
    """The alive entries of `ray.nodes()` as planning data."""
    return tuple(LiveNode(node["NodeID"], float(node["Resources"].get("CPU", 0)),
                          float(node["Resources"].get("GPU", 0)),
                          (node.get("Labels") or {}).get(NODE_GROUP_LABEL) or None,
                          HEAD_RESOURCE in node["Resources"])
                 for node in ray_nodes if node.get("Alive"))


def load_autoscaling_config(path: Path) -> dict[str, Any]:
    """An autoscaler config file (YAML, or the JSON that `ray up` writes); ValueError naming the file."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the autoscaler config ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        raise ValueError(f"{path}: not an autoscaler config (no available_node_types)")
    return config


def read_cluster_state(local: bool) -> ClusterState:
    """The connected cluster's state. `local`: a Ray started by this process, which gains no nodes."""
    import ray
    from ray._private.state import state as gcs_state

    nodes = live_nodes(ray.nodes())  # type: ignore[no-untyped-call]
    if local:
        return ClusterState(nodes, Scaling.STATIC, source="a local Ray started by this command")
    explicit = os.environ.get(AUTOSCALING_CONFIG_ENV)
    if explicit:
        return _from_file(nodes, Path(explicit), f"{AUTOSCALING_CONFIG_ENV}={explicit}")
    gcs_config = gcs_state.get_cluster_config()
    if gcs_config is not None and gcs_config.node_group_configs:
        node_types, max_resources = node_types_from_gcs_config(gcs_config)
        return ClusterState(nodes, Scaling.AUTOSCALER, node_types, max_resources=max_resources,
                            source="the autoscaler's cluster config in the GCS")
    bootstrap = Path(BOOTSTRAP_CONFIG).expanduser()
    if bootstrap.is_file():
        return _from_file(nodes, bootstrap, BOOTSTRAP_CONFIG)
    return ClusterState(nodes, Scaling.UNKNOWN,
                        source=f"none in the GCS, no {BOOTSTRAP_CONFIG} here, {AUTOSCALING_CONFIG_ENV} not set")


def _from_file(nodes: tuple[LiveNode, ...], path: Path, source: str) -> ClusterState:
    config = load_autoscaling_config(path)
    try:
        node_types, max_workers = node_types_from_autoscaling_config(config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return ClusterState(nodes, Scaling.AUTOSCALER, node_types, max_workers, source=source)
