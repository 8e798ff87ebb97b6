"""cluster.yaml passes the checks `ray up` runs, launches valid EC2 requests, and sets up what we rely on
(the pinned versions, the node check); its commented H100 node type would too; constraints.txt pins what
the driver runs; manifests/s3-example.csv is a well-formed S3 manifest."""

from __future__ import annotations

import copy
import csv
import re
import shlex
from importlib.metadata import requires, version
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

from pipeline.batch.cluster_state import node_types_from_autoscaling_config
from pipeline.batch.planning import ClusterState, LiveNode, PlanOptions, Scaling, plan_workers
from pipeline.storage.store import parse_location

ROOT = Path(__file__).resolve().parent.parent

# vCPUs and GPUs of the instance types cluster.yaml may use, from AWS's published specifications.
INSTANCE_HARDWARE = {"g6.xlarge": (4, 1), "g6.2xlarge": (8, 1), "g6.12xlarge": (48, 4), "g6e.xlarge": (4, 1),
                     "g5.xlarge": (4, 1), "m7i.large": (2, 0), "m7i.xlarge": (4, 0), "m7i.2xlarge": (8, 0),
                     "p5.4xlarge": (16, 1), "p5.48xlarge": (192, 8), "p5e.48xlarge": (192, 8),
                     "p5en.48xlarge": (192, 8)}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def run_instances_shape() -> Any:
    """The input shape of EC2 RunInstances, which Ray's AWS provider calls with each node_config."""
    return botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape


def _gpu_node_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: node for name, node in config["available_node_types"].items()
            if node.get("resources", {}).get("GPU", 0) > 0}


def test_ray_up_accepts_it(config: dict[str, Any]) -> None:
    """The same preparation (defaults merged) and schema validation that `ray up` runs first."""
    validate_config(prepare_config(copy.deepcopy(config)))


def test_the_validator_rejects_a_broken_copy(config: dict[str, Any]) -> None:
    broken = copy.deepcopy(config)
    broken["available_node_types"]["head"]["resources"] = {"GPU": "one"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    unknown_key = copy.deepcopy(config)
    unknown_key["idle_timeout"] = 10
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown_key))


def test_every_node_config_is_a_valid_run_instances_request(config: dict[str, Any], run_instances_shape: Any) -> None:
    for name, node in config["available_node_types"].items():
        validate_parameters({**node["node_config"], "MinCount": 1, "MaxCount": 1}, run_instances_shape)
        assert node["node_config"]["InstanceType"] in run_instances_shape.members["InstanceType"].enum, name
    with pytest.raises(ParamValidationError):
        validate_parameters({"InstanceTyp": "g6.xlarge", "MinCount": 1, "MaxCount": 1}, run_instances_shape)


def test_a_gpu_worker_type_declares_its_hardware_and_can_scale(config: dict[str, Any]) -> None:
    gpu_types = _gpu_node_types(config)
    assert gpu_types, "no node type offers a GPU"
    for name, node in gpu_types.items():
        assert name != config["head_node_type"]
        cpus, gpus = INSTANCE_HARDWARE[node["node_config"]["InstanceType"]]
        assert gpus >= 1
        assert node["resources"] == {"CPU": cpus, "GPU": gpus}
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"]
        assert node["max_workers"] > node["min_workers"], "the GPU type cannot scale out"
        assert node["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")


def test_the_head_is_a_cpu_node_that_runs_no_actors(config: dict[str, Any]) -> None:
    head = config["available_node_types"][config["head_node_type"]]
    assert INSTANCE_HARDWARE[head["node_config"]["InstanceType"]][1] == 0
    assert head["resources"] == {"CPU": 0}


def test_all_nodes_boot_the_same_image(config: dict[str, Any]) -> None:
    images = {node["node_config"]["ImageId"] for node in config["available_node_types"].values()}
    assert len(images) == 1
    assert images.pop().startswith(("ami-", "resolve:ssm:/aws/service/deeplearning/"))


def test_setup_installs_the_synced_stylebatch_pinned_checks_the_driver_then_warms_its_weights(
        config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    remote_checkouts = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert len(remote_checkouts) == 1
    checkout = remote_checkouts[0].replace("/home/ubuntu", "~")
    for commands in (prepared["head_setup_commands"], prepared["worker_setup_commands"]):
        words = [shlex.split(part) for command in commands for part in command.split("&&")]
        install = next(index for index, argv in enumerate(words) if argv[:2] == ["pip", "install"]
                       and argv[-1] == checkout)
        assert words[install][-3:-1] == ["-c", f"{checkout}/constraints.txt"], "installs unpinned versions"
        check = words.index(["python", "-m", "pipeline.batch.nodecheck"])
        warm = words.index(["python", "-c", "from stylecore import load_weights; load_weights()"])
        assert install < check < warm


def test_constraints_pin_the_versions_the_driver_runs() -> None:
    """Every runtime dependency of stylebatch (ray and torch among them) at the version installed here."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[_normalized(name)] = pinned
    dependencies = {_normalized(Requirement(text).name) for text in requires("stylebatch") or []
                    if "extra ==" not in text}
    assert {"ray", "torch", "torchvision"} <= dependencies
    for name in dependencies:
        assert pins.get(name) == version(name), f"constraints.txt pins {name} {pins.get(name)}, here {version(name)}"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _commented_node_type(text: str, name: str) -> dict[str, Any]:
    """The node type `name` that cluster.yaml carries commented out, uncommented."""
    lines = text.splitlines()
    start = lines.index(f"  # {name}:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append(line[:2] + line[4:])
    return yaml.safe_load("\n".join(block))[name]


def test_the_commented_h100_node_type_is_valid_once_uncommented(config: dict[str, Any],
                                                               run_instances_shape: Any) -> None:
    text = (ROOT / "cluster.yaml").read_text()
    h100 = _commented_node_type(text, "h100_worker")
    cpus, gpus = INSTANCE_HARDWARE[h100["node_config"]["InstanceType"]]
    assert h100["resources"] == {"CPU": cpus, "GPU": gpus}
    validate_parameters({**h100["node_config"], "MinCount": 1, "MaxCount": 1}, run_instances_shape)
    with_h100 = copy.deepcopy(config)
    with_h100["available_node_types"]["h100_worker"] = h100
    with_h100["available_node_types"]["gpu_worker"]["max_workers"] = config["max_workers"] - h100["max_workers"]
    validate_config(prepare_config(with_h100))

    advice = text[text.index("# H100 / H200 nodes"):text.index("# h100_worker:")]
    share = float(re.search(r"--gpus-per-worker (\S+)`", advice).group(1))
    node_types, max_workers = node_types_from_autoscaling_config(with_h100)
    h100_only = ClusterState((LiveNode("head", 0, 0, is_head=True),), Scaling.AUTOSCALER,
                             tuple(kind for kind in node_types if kind.name == "h100_worker"), max_workers)
    plan = plan_workers(h100_only, PlanOptions(gpus_per_worker=share))
    assert plan.count == h100["max_workers"] * round(gpus / share), "the suggested share does not fill the GPUs"
    assert plan.num_cpus == 1.0 and plan.threads >= 1


def test_s3_example_manifest_has_the_documented_columns_and_s3_inputs() -> None:
    with open(ROOT / "manifests" / "s3-example.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["content", "style", "alpha_global", "alpha_local", "alpha_content", "output"]
    assert len(rows) >= 3
    output_prefix = parse_location("s3://my-bucket/out")
    for row in rows:
        for column in ("content", "style"):
            assert parse_location(row[column]).scheme == "s3"
        for column in ("alpha_global", "alpha_local", "alpha_content"):
            assert row[column] == "" or float(row[column]) >= 0
        if row["output"]:
            output_prefix.child(row["output"])
    assert any(all(row[column] == "" for column in ("alpha_global", "alpha_local", "alpha_content", "output"))
               for row in rows), "no row shows that optional cells may be empty"
