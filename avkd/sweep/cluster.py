"""A sweep on a multi-node Ray cluster ($RAY_ADDRESS): what is checked before any work.

Nothing in a sweep assumes that the nodes share a folder: trials get their inputs from Ray's object
store and their teachers' checkpoints from the tracking store; extraction shards return their
features to the driver. What remains per node is checked here, once, before extraction:

1. tracking: every node's runs must reach one store, so a file-based tracking URI (SQLite, a local
   folder) on a cluster of several nodes is refused, with the one line that says what to run instead;
2. pre-flight: one small Ray task pinned to each alive node checks that it imports avkd (the trial
   code and its dependencies), reaches the tracking server and can write its temp dir; a failure is
   one line naming the node and the cause;
3. the dataset: the nodes that can read the video files run the extraction shards (the others only
   run trials, which need no dataset); at least the driver's node reads it (it loaded the dataset).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from avkd.errors import AvkdError

FILE_STORES = ("sqlite:", "file:")
PREFLIGHT_TIMEOUT_S = 120.0  # a node that cannot even start a task in this time is reported as such
SERVER_COMMAND = (
    "mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:///mlflow.db "
    "--artifacts-destination ./mlartifacts"
)
# Extra Ray resources of every trial, as JSON (e.g. '{"node2": 1}'): pins trials to the nodes that
# have them. For tests and ad-hoc placement; not part of a trial's identity.
TRIAL_RESOURCES_ENV = "AVKD_TRIAL_RESOURCES"


@dataclass
class Node:
    node_id: str
    address: str  # the node's IP address, as Ray knows it
    reads_dataset: bool = False

    def __str__(self) -> str:
        return f"{self.address} ({self.node_id[:8]})"


def alive_nodes() -> list[Node]:
    import ray

    return [Node(n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes() if n["Alive"]]


def is_file_store(uri: str) -> bool:
    return uri.startswith(FILE_STORES)


def refuse_file_store(uri: str, nodes: int) -> None:
    """On a cluster of several nodes a file-based tracking store is one AvkdError line."""
    if nodes > 1 and is_file_store(uri):
        raise AvkdError(
            f"tracking URI {uri} is a file on the driver's machine, but RAY_ADDRESS is a cluster of "
            f"{nodes} nodes whose trials cannot log into it: start `{SERVER_COMMAND}` on one machine "
            "(it serves the artifacts too) and set MLFLOW_TRACKING_URI=http://<that machine>:5000"
        )


def _probe(uri: str, videos: list[str]) -> dict:
    """Runs on one node: what it lacks, as {"error": <cause or None>, "reads_dataset": bool}."""
    import tempfile

    try:
        import avkd.sweep.trial  # noqa: F401 - the trial code and everything it imports (torch, mlflow, ray)
    except Exception as err:  # noqa: BLE001 - the cause is what is reported
        return {"error": f"cannot import avkd's trial code ({type(err).__name__}: {err})", "reads_dataset": False}
    if uri.startswith(("http://", "https://")):
        from trackers.preflight import check_server

        try:
            check_server(uri)
        except AvkdError as err:
            return {"error": str(err), "reads_dataset": False}
    try:
        with tempfile.TemporaryDirectory(prefix="avkd-preflight-"):
            pass
    except OSError as err:
        return {"error": f"cannot write its temp dir {tempfile.gettempdir()} ({err.strerror})", "reads_dataset": False}
    return {"error": None, "reads_dataset": bool(videos) and all(os.access(v, os.R_OK) for v in videos)}


def preflight(uri: str, videos: list[str], timeout_s: float = PREFLIGHT_TIMEOUT_S) -> list[Node]:
    """Run _probe on every alive node (pinned there); -> the nodes, each marked whether it reads `videos`.

    Raises one AvkdError line naming the first node that failed and why."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes()
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(uri, videos): n
        for n in nodes
    }
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    if late:
        raise AvkdError(f"pre-flight: node {refs[late[0]]} did not run its check within {timeout_s:.0f} s")
    for ref in ready:
        node = refs[ref]
        try:
            result = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - e.g. the task could not even be unpickled there (no avkd)
            cause = str(err).strip().splitlines()[-1][:300]
            raise AvkdError(f"pre-flight: node {node} cannot run avkd's check task ({cause})") from None
        if result["error"]:
            raise AvkdError(f"pre-flight: node {node}: {result['error']}")
        node.reads_dataset = result["reads_dataset"]
    return nodes


def check_cluster(uri: str, dataset, console=None) -> list[str] | None:
    """With Ray connected to $RAY_ADDRESS: refuse a file store on several nodes, run the pre-flight,
    and return the node ids that read the dataset (where extraction shards may run); None on one node."""
    nodes = alive_nodes()
    refuse_file_store(uri, len(nodes))
    videos = _sample_videos(dataset)
    checked = preflight(uri, videos)
    readers = [n.node_id for n in checked if n.reads_dataset]
    if console is not None:
        console.print(
            f">> cluster: {len(checked)} node(s) passed the pre-flight; {len(readers)} read the dataset "
            "(they run the extraction shards)"
        )
    if len(checked) < 2:
        return None
    if not readers:
        raise AvkdError(
            f"pre-flight: no node of the cluster can read the dataset's videos (e.g. {videos[0]}); "
            "mount the dataset on at least one node at the same path as on the driver"
        )
    return readers


def _sample_videos(dataset, n: int = 3) -> list[str]:
    """A few video files of the dataset (first, middle, last): what a node must read to extract."""
    paths = sorted(str(v.path) for v in dataset.videos.values() if v.path is not None)
    return sorted({paths[0], paths[len(paths) // 2], paths[-1]}) if paths else []


def trial_resources(cpu: float, gpu: float) -> dict[str, float]:
    """A trial's Ray resources: the sweep file's CPU/GPU plus $AVKD_TRIAL_RESOURCES (JSON)."""
    extra = os.environ.get(TRIAL_RESOURCES_ENV, "")
    try:
        custom = json.loads(extra) if extra else {}
        if not isinstance(custom, dict) or not all(isinstance(v, (int, float)) for v in custom.values()):
            raise ValueError("not an object of numbers")
    except ValueError as err:
        raise AvkdError(f"${TRIAL_RESOURCES_ENV}: {extra!r} is not a JSON object of resource amounts ({err})") from None
    return {"cpu": cpu, "gpu": gpu, **custom}
