"""The tiny sweep on a real two-node Ray cluster with a real MLflow tracking server, the second node
sharing no folder with the driver.

On this machine: `mlflow server` on 127.0.0.1 (artifacts served from its own folder); a head node
(`ray start --head`, 1 CPU) started from the test's workspace; a second node (`ray start --address`,
1 CPU, resource `node2`) started inside a private mount namespace (`unshare -m`) in which the test's
workspace (corpus, feature cache, runs, tracking server files) and the repository's runs/, cache/
and data/ are covered by empty tmpfs mounts, running a separate copy of the code from its own
working folder. Every trial asks for `node2` ($AVKD_TRIAL_RESOURCES), so all of them run there.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import sweep_helpers as H

RAY = Path(sys.executable).parent / "ray"
TRIALS = 3  # teacher + students rep and rep+ce at k = 0.2


def _ray_start(args: list[str], env: dict, cwd: Path, hide: list[Path] = ()) -> int:
    """`ray start ...` in a new session (its daemons keep that session id: how teardown finds them);
    with `hide`, inside a private mount namespace where those folders are empty tmpfs mounts."""
    cmd = [str(RAY), "start", *args, "--disable-usage-stats"]
    if hide:
        mounts = " && ".join(f"mount -t tmpfs avkd-hidden {shlex.quote(str(p))}" for p in hide)
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{mounts} && exec {shlex.join(cmd)}"]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True
    )
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{out[-3000:]}"
    return proc.pid


def _can_hide_folders(tmp: Path) -> str | None:
    """None when `unshare -m` + tmpfs mounts work here; else why not."""
    probe = tmp / "probe"
    probe.mkdir()
    (probe / "visible").write_text("x")
    try:
        proc = subprocess.run(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t tmpfs avkd-hidden {probe} && ls -A {probe}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare not usable: {err}"
    if proc.returncode != 0 or proc.stdout.strip():
        return f"cannot hide a folder in a private mount namespace: {(proc.stderr or proc.stdout).strip()[:200]}"
    return None


def _on_node2(address: str, env_base: dict, workspace: Path) -> dict:
    """What a task on the second node sees: its avkd, the workspace's files, the repo's folders."""
    code = (
        "import json, os, ray\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        "@ray.remote(num_cpus=0, resources={'node2': 0.01})\n"
        "def look(paths):\n"
        "    import avkd\n"
        "    return {'avkd': avkd.__file__, 'cwd': os.getcwd(), **{p: os.path.exists(p) for p in paths}}\n"
        f"paths = [{str(workspace / 'corpus')!r}, {str(workspace / 'cache')!r}]\n"
        f"print(json.dumps(ray.get(look.remote(paths))))\n"
    )
    proc = subprocess.run(
        [H.PYTHON, "-c", code], cwd=workspace.parent, env=env_base, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_tiny_sweep_on_two_nodes_sharing_no_folder(tiny_corpus, tmp_path, tmp_path_factory):
    if not RAY.exists() or shutil.which("unshare") is None:
        pytest.skip("needs the `ray` CLI and `unshare`")
    why = _can_hide_folders(tmp_path_factory.mktemp("ns-probe"))
    if why:
        pytest.skip(why)
    workspace = tmp_path / "ws"  # everything of this sweep: hidden from the second node
    workspace.mkdir()
    corpus = shutil.copytree(tiny_corpus, workspace / "corpus")
    code = tmp_path_factory.mktemp("node2-code")  # the second node's own copy of the code
    for pkg in ("avkd", "trackers", "reports"):
        shutil.copytree(H.REPO / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__", "out"))
    hide = [workspace] + [H.REPO / d for d in ("runs", "cache", "data") if (H.REPO / d).is_dir()]

    ray_tmp = H.ray_tmpdir()
    port = H.free_port()
    address = f"127.0.0.1:{port}"
    base = {**H.cli_env(), "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled"}
    base.pop("RAY_ADDRESS", None)
    server = H.MlflowServer(workspace)
    sessions: list[int] = []
    sweep = None
    try:
        print(f"mlflow server healthy in {server.start():.1f} s at {server.uri}")
        one_cpu = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
        sessions.append(
            _ray_start(
                [
                    "--head",
                    "--port",
                    str(port),
                    *one_cpu,
                    "--include-dashboard=false",
                    "--temp-dir",
                    str(ray_tmp / "ray"),
                ],
                base,
                workspace,
            )
        )
        node2_env = {**base, "PYTHONPATH": str(code)}
        sessions.append(
            _ray_start(["--address", address, *one_cpu, "--resources", '{"node2": 1}'], node2_env, code, hide=hide)
        )
        seen = _on_node2(address, base, workspace)
        print(f"the second node sees: {seen}")
        assert seen["avkd"].startswith(str(code)) and seen["cwd"] == str(code)
        assert not any(v for k, v in seen.items() if k.startswith("/")), seen

        sweep_file = H.write_sweep(workspace, corpus, server.uri, ks=[0.2], losses=["rep", "rep+ce"], blind=False)
        env = {**base, "RAY_ADDRESS": address, "AVKD_TRIAL_RESOURCES": json.dumps({"node2": 1})}
        with open(workspace / "sweep.log", "wb") as log:
            sweep = subprocess.Popen(
                [H.PYTHON, "-m", "avkd", "sweep", str(sweep_file), "--report-out", str(workspace / "reports")],
                cwd=workspace,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.time()
        rc = sweep.wait(timeout=1200)
        out = (workspace / "sweep.log").read_text(errors="replace")
        print(f"sweep exit {rc} in {time.time() - started:.1f} s; its output ends:\n{out[-2500:]}")
        assert rc == 0, out[-4000:]
        assert "passed the pre-flight; 1 read the dataset" in out

        uri = server.uri
        by_config = H.check_one_finished_per_config(uri, TRIALS)
        assert all(len(rs) == 1 for rs in by_config.values()), "a trial ran more than once"
        artifacts = workspace / "artifacts"
        for [run] in by_config.values():
            names = H.artifact_names(uri, run.info.run_id)
            for name in (
                "config.yaml",
                "checkpoint",
                "test_captions.json",
                "per_video_scores.csv",
                "extraction_errors.json",
            ):
                assert name in names, (run.info.run_name, names)
            assert any(k.startswith("train/") for k in run.data.metrics) and any(
                k.startswith("val/") for k in run.data.metrics
            ), run.info.run_name
            stored = list(artifacts.rglob(f"{run.info.run_id}/artifacts/checkpoint/best.pt"))
            assert stored, f"{run.info.run_name}: checkpoint not in the server's artifact store"
        assert (workspace / "reports" / "tiny" / "table1.csv").exists()
        print("table1.csv:\n" + (workspace / "reports" / "tiny" / "table1.csv").read_text())
    finally:
        if sweep is not None:
            H.stop_session(sweep.pid)
        server.stop()
        # `ray stop` would stop every Ray process of this machine (other people's too): stop ours only,
        # by the sessions of our two `ray start`s and our private Ray temp folder.
        for session in sessions:
            H.stop_session(session, ray_tmp)
        deadline = time.time() + 30
        left = {}
        while time.time() < deadline:
            left = {pid: cmd for s in sessions for pid, cmd in H.leftover_processes(s, ray_tmp).items()}
            if not left:
                break
            H.kill_pids(left)
            time.sleep(1)
        H.remove_ray_tmp(ray_tmp)
    assert not left, f"Ray processes left: {left}"
