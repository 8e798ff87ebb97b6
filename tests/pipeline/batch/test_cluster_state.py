"""Reading a cluster as planning data: node types from an autoscaler config (cluster.yaml itself) or
from the config an autoscaler reports to the GCS, live nodes from Ray, and which source a driver uses."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml
from ray.core.generated import autoscaler_pb2

from pipeline.batch.cluster_state import (
    AUTOSCALING_CONFIG_ENV,
    BOOTSTRAP_CONFIG,
    live_nodes,
    load_autoscaling_config,
    node_types_from_autoscaling_config,
    node_types_from_gcs_config,
    read_cluster_state,
)
from pipeline.batch.planning import LiveNode, NodeType, Scaling

ROOT = Path(__file__).resolve().parents[3]


def test_cluster_yaml_gives_its_gpu_worker_type_and_leaves_out_the_head():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    node_types, max_workers = node_types_from_autoscaling_config(config)
    gpu_types = [node_type for node_type in node_types if node_type.gpus]
    assert gpu_types and all(node_type.max_count and node_type.cpus >= 1 for node_type in gpu_types)
    assert config["head_node_type"] not in {node_type.name for node_type in node_types}
    assert max_workers == config["max_workers"]


def test_a_node_type_without_max_workers_takes_the_cluster_wide_one_and_missing_resources_are_an_error():
    config = {"max_workers": 5, "head_node_type": "head",
              "available_node_types": {"head": {"resources": {"CPU": 0}},
                                       "cpu": {"resources": {"CPU": 8}}}}
    assert node_types_from_autoscaling_config(config) == ((NodeType("cpu", 8.0, 0.0, 5),), 5)
    config["available_node_types"]["gpu"] = {"max_workers": 2}
    with pytest.raises(ValueError, match="node type 'gpu' declares no resources"):
        node_types_from_autoscaling_config(config)


def test_the_cluster_config_an_autoscaler_reports_to_the_gcs():
    config = autoscaler_pb2.ClusterConfig()
    config.node_group_configs.add(name="gpu-group", resources={"CPU": 8, "GPU": 1}, min_count=0, max_count=4)
    config.node_group_configs.add(name="any", resources={"CPU": 2}, min_count=0, max_count=-1)
    config.max_resources["GPU"] = 3
    node_types, max_resources = node_types_from_gcs_config(config)
    assert node_types == (NodeType("gpu-group", 8.0, 1.0, 4), NodeType("any", 2.0, 0.0, None))
    assert max_resources == {"GPU": 3.0}


def test_live_nodes_keep_the_alive_ones_their_node_group_and_which_is_the_head():
    nodes = live_nodes([
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 0.0, "node:__internal_head__": 1.0}, "Labels": {}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0},
         "Labels": {"ray.io/node-group": "gpu_node"}},
        {"NodeID": "c", "Alive": False, "Resources": {"CPU": 4.0}},
    ])
    assert nodes == (LiveNode("a", 0.0, 0.0, None, True), LiveNode("b", 1.0, 1.0, "gpu_node", False))


def test_a_file_that_is_not_an_autoscaler_config_is_named(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster_name: x\n")
    with pytest.raises(ValueError, match=re.escape(f"{broken}: not an autoscaler config")):
        load_autoscaling_config(broken)
    with pytest.raises(ValueError, match="cannot read the autoscaler config"):
        load_autoscaling_config(tmp_path / "missing.yaml")


@pytest.fixture
def driver(ray_head) -> Iterator[None]:
    ray.init(address=ray_head.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_a_driver_reads_the_explicit_config_then_ray_ups_bootstrap_file_else_says_growth_is_unknown(
        tmp_path, monkeypatch, driver):
    monkeypatch.delenv(AUTOSCALING_CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    unknown = read_cluster_state(local=False)
    assert unknown.scaling is Scaling.UNKNOWN and not unknown.node_types
    assert [(node.cpus, node.is_head) for node in unknown.nodes] == [(2.0, True)]
    assert read_cluster_state(local=True).scaling is Scaling.STATIC

    bootstrap = {"max_workers": 2, "head_node_type": "head",
                 "available_node_types": {"head": {"resources": {"CPU": 2}},
                                          "gpu": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 2}}}
    (tmp_path / "ray_bootstrap_config.yaml").write_text(json.dumps(bootstrap))  # `ray up` writes JSON
    found = read_cluster_state(local=False)
    assert (found.scaling, found.source, found.max_worker_nodes) == (Scaling.AUTOSCALER, BOOTSTRAP_CONFIG, 2)
    assert found.node_types == (NodeType("gpu", 4.0, 1.0, 2),)

    explicit = tmp_path / "elsewhere.yaml"
    explicit.write_text(yaml.safe_dump({**bootstrap, "max_workers": 1}))
    monkeypatch.setenv(AUTOSCALING_CONFIG_ENV, str(explicit))
    assert read_cluster_state(local=False).max_worker_nodes == 1
    monkeypatch.setenv(AUTOSCALING_CONFIG_ENV, str(tmp_path / "typo.yaml"))
    with pytest.raises(ValueError, match=r"typo\.yaml: cannot read the autoscaler config"):
        read_cluster_state(local=False)
