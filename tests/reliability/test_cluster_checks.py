"""The cluster checks of avkd.sweep.cluster on a real two-node Ray cluster (ray.cluster_utils: a head
and a worker node on this machine, 1 CPU each, in a private Ray temp folder): a file-based tracking
store refused, and a node that fails the pre-flight named with its cause."""

from __future__ import annotations

import subprocess

import pytest

from avkd.errors import AvkdError
from avkd.sweep.cluster import alive_nodes, check_cluster, preflight, refuse_file_store, trial_resources

from . import sweep_helpers as H


def test_file_store_refused_only_on_several_nodes(monkeypatch):
    refuse_file_store("sqlite:///x/mlflow.db", 1)  # one node: its own file is fine
    refuse_file_store("http://10.0.0.1:5000", 4)
    for uri in ("sqlite:///x/mlflow.db", "file:///x/mlruns"):
        with pytest.raises(AvkdError) as err:
            refuse_file_store(uri, 2)
        line = str(err.value)
        assert "\n" not in line and uri in line and "cluster of 2 nodes" in line
        assert "mlflow server" in line and "--artifacts-destination" in line and "MLFLOW_TRACKING_URI" in line
    monkeypatch.setenv("AVKD_TRIAL_RESOURCES", '{"node2": 1}')
    assert trial_resources(1, 0) == {"cpu": 1, "gpu": 0, "node2": 1}
    monkeypatch.setenv("AVKD_TRIAL_RESOURCES", "node2")
    with pytest.raises(AvkdError, match=r"\$AVKD_TRIAL_RESOURCES: 'node2' is not a JSON object"):
        trial_resources(1, 0)


def test_preflight_passes_and_finds_dataset_readers(tmp_path, tiny_corpus):
    """A local one-node Ray: the pre-flight passes, the node reads the corpus but not a missing file."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_tmp = H.ray_tmpdir()
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", _temp_dir=str(ray_tmp))
    try:
        video = next(tiny_corpus.rglob("*.mp4"))
        [node] = preflight(f"sqlite:///{tmp_path / 'mlflow.db'}", [str(video)])
        assert node.reads_dataset
        [node] = preflight(f"sqlite:///{tmp_path / 'mlflow.db'}", [str(tmp_path / "absent.mp4")])
        assert not node.reads_dataset
    finally:
        ray.shutdown()
        H.remove_ray_tmp(ray_tmp)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A head and a worker node whose Python path has an `avkd` that cannot be imported (another,
    broken version of the code on that node). Yields (cluster, worker node id)."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    broken = tmp_path_factory.mktemp("broken-code")
    (broken / "avkd").mkdir()
    (broken / "avkd" / "__init__.py").write_text("raise ImportError('avkd on this node is a broken copy')\n")
    ray_tmp = H.ray_tmpdir()
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ.update(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": str(broken)})
    # Ray puts the driver's working directory first on every worker's sys.path: from the repo root the
    # worker would import the good avkd from there.
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("driver-cwd"))
    ray.init(address=cluster.address, logging_level="ERROR")
    try:
        yield cluster, worker.node_id
    finally:
        ray.shutdown()
        os.chdir(cwd)
        cluster.shutdown()
        H.remove_ray_tmp(ray_tmp)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow
def test_cluster_checks_on_two_nodes(two_nodes, tiny_corpus, tmp_path):
    """Injected: a 2-node cluster whose worker node imports a broken avkd; a sqlite tracking URI; a
    tracking server that is down. Holds: the sqlite URI is refused (one line) before any node is
    probed; with a dead server every node fails its pre-flight naming the server; the broken node is
    named (its address and id) with the import error as the cause."""
    from avkd.data.msrvtt import load_msrvtt

    cluster, broken_node = two_nodes
    dataset = load_msrvtt(tiny_corpus)
    assert len(alive_nodes()) == 2
    with pytest.raises(AvkdError) as err:
        check_cluster(f"sqlite:///{tmp_path / 'mlflow.db'}", dataset)
    print(err.value)
    assert "\n" not in str(err.value) and "cluster of 2 nodes" in str(err.value)

    dead = f"http://127.0.0.1:{H.free_port()}"
    with pytest.raises(AvkdError) as err:
        preflight(dead, [])
    print(err.value)
    line = str(err.value)
    assert "\n" not in line and line.startswith("pre-flight: node ")
    assert f"{dead}: tracking server unreachable (connection refused" in line or "broken copy" in line

    server = H.MlflowServer(tmp_path)
    try:
        server.start()
        with pytest.raises(AvkdError) as err:
            check_cluster(server.uri, dataset)
    finally:
        server.stop()
    print(err.value)
    line = str(err.value)
    assert "\n" not in line and f"({broken_node[:8]})" in line
    assert "avkd on this node is a broken copy" in line


@pytest.mark.slow
def test_cli_refuses_file_store_on_a_cluster(two_nodes, tiny_corpus, tmp_path):
    """The CLI end to end: RAY_ADDRESS at the 2-node cluster, tracking.uri a SQLite file. Holds: exit
    code 2 (a config error) and one line, before any feature is extracted."""
    cluster, _ = two_nodes
    sweep = H.write_sweep(tmp_path, tiny_corpus, f"sqlite:///{tmp_path / 'mlflow.db'}")
    env = H.sweep_env(H.ray_tmpdir(), RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [H.PYTHON, "-m", "avkd", "sweep", str(sweep)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    print(out[-2000:])
    assert proc.returncode == 2
    errors = [line for line in out.splitlines() if "cluster of 2 nodes" in line]
    assert len(errors) == 1 and "mlflow server" in errors[0] and "MLFLOW_TRACKING_URI" in errors[0]
    assert "features:" not in out and H.cache_entry_count(tmp_path / "cache") == 0
