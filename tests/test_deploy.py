"""Static checks of deploy/: every config parses, names one image and one Ray version.

Oracle: the installed ``ray`` package, the ``ray[...]==X`` pin in pyproject.toml, the one-line
image file deploy/IMAGE, and Ray's own cluster-launcher schema (ray/autoscaler/ray-schema.json).
No network, no Ray start, no Kubernetes: what these cannot show (that KubeRay accepts the
manifests, that the image builds, that SLURM runs the script) is left to a real cluster.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
LAUNCHER = DEPLOY / "cluster-launcher" / "aws.yaml"
SBATCH = DEPLOY / "slurm" / "cmpipe.sbatch"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
RUNTIME_ENVS = [DEPLOY / "runtime_env.yaml", DEPLOY / "runtime_env.pip.yaml"]

REQUIRED_EXCLUDES = {".git", ".venv", "runs", "*.zarr", "checkpoints", "bench/out"}
JOB_SCRIPTS = {"pipeline", "generate", "train", "infer", "report"}

YAML_FILES = sorted(p for ext in ("*.yaml", "*.yml") for p in DEPLOY.rglob(ext))


def _load(path):
    return list(yaml.safe_load_all(path.read_text()))


def _image():
    lines = (DEPLOY / "IMAGE").read_text().splitlines()
    assert len(lines) == 1 and lines[0].strip() == lines[0] and lines[0], lines
    return lines[0]


def _images_allowed():
    image = _image()
    return {image, image + "-gpu"}


def _pinned_ray():
    text = (ROOT / "pyproject.toml").read_text()
    pins = re.findall(r'"ray(?:\[[^\]]*\])?==([^"\s;]+)"', text)
    assert len(pins) == 1, pins
    return pins[0]


def _pod_specs(doc):
    """(where, pod spec) of every pod template in a RayCluster or RayJob document."""
    if doc["kind"] == "RayJob":
        cluster = doc["spec"]["rayClusterSpec"]
        yield "submitter", doc["spec"]["submitterPodTemplate"]["spec"]
    else:
        cluster = doc["spec"]
    yield "head", cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


def _ray_docs():
    docs = [d for p in ("raycluster.yaml", "rayjob.yaml") for d in _load(KUBERAY / p)]
    assert {d["kind"] for d in docs} == {"RayCluster", "RayJob"}
    return docs


def _cluster_spec(doc):
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def _mounts_data_pvc(pod):
    claims = {
        v["name"]
        for v in pod.get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == "cmpipe-data"
    }
    assert claims, "no volume from the PVC cmpipe-data"
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/data") in claims, (container["name"], mounts)


# --- one Ray version, one image -------------------------------------------------------------


def test_ray_version_is_pinned_once_and_installed():
    assert _pinned_ray() == ray.__version__


def test_image_file_names_the_pinned_ray_image():
    image = _image()
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py3\d+", image), image


def test_every_ray_image_named_in_deploy_is_the_pinned_one():
    """Every rayproject/ray image anywhere in deploy/ is deploy/IMAGE or its -gpu variant."""
    allowed = _images_allowed()
    found = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "IMAGE":
            for name in re.findall(r"rayproject/ray:[\w.\-]+", path.read_text()):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert found
    assert set(found) <= allowed, {k: v for k, v in found.items() if k not in allowed}


# --- every YAML parses ------------------------------------------------------------------


def test_deploy_has_the_expected_yaml_files():
    names = {str(p.relative_to(DEPLOY)) for p in YAML_FILES}
    assert {
        "runtime_env.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/rayjob.yaml",
        "kuberay/pvc.yaml",
        "cluster-launcher/aws.yaml",
    } <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    docs = _load(path)
    assert docs and all(isinstance(d, dict) for d in docs)


# --- runtime environments ------------------------------------------------------------------


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_uploads_the_repo_without_data(path):
    (env,) = _load(path)
    assert env["working_dir"] == "."
    assert REQUIRED_EXCLUDES <= set(env["excludes"])


def test_pip_runtime_env_extends_the_plain_one():
    (plain,) = _load(RUNTIME_ENVS[0])
    (pip,) = _load(RUNTIME_ENVS[1])
    assert {k: pip[k] for k in plain} == plain
    assert pip["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]


# --- KubeRay ---------------------------------------------------------------------------------


def test_kuberay_api_version_ray_version_and_auth():
    for doc in _ray_docs():
        assert doc["apiVersion"] == "ray.io/v1"
        spec = _cluster_spec(doc)
        assert spec["rayVersion"] == ray.__version__ == _pinned_ray()
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["enableInTreeAutoscaling"] is True


def test_kuberay_images_are_the_pinned_image():
    image = _image()
    for doc in _ray_docs():
        for where, pod in _pod_specs(doc):
            want = image + "-gpu" if where == "gpu" else image
            for container in pod["containers"]:
                assert container["image"] == want, (doc["kind"], where)


def test_kuberay_groups_autoscale_and_the_gpu_group_requests_gpus():
    for doc in _ray_docs():
        groups = {g["groupName"]: g for g in _cluster_spec(doc)["workerGroupSpecs"]}
        assert set(groups) == {"cpu", "gpu"}
        for group in groups.values():
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            assert group["maxReplicas"] >= 1
        for name, group in groups.items():
            (container,) = group["template"]["spec"]["containers"]
            resources = container["resources"]
            gpus = {k: resources[k].get("nvidia.com/gpu") for k in ("requests", "limits")}
            if name == "gpu":
                assert gpus == {"requests": 1, "limits": 1}
            else:
                assert gpus == {"requests": None, "limits": None}


def test_every_pod_mounts_the_shared_pvc_at_data():
    pods = [pod for doc in _ray_docs() for _, pod in _pod_specs(doc)]
    pods += [d["spec"] for d in _load(KUBERAY / "pvc.yaml") if d["kind"] == "Pod"]
    assert len(pods) >= 7
    for pod in pods:
        _mounts_data_pvc(pod)


def test_pvc_is_read_write_many():
    (pvc,) = [d for d in _load(KUBERAY / "pvc.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "cmpipe-data"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    image = _image()
    for pod in (d for d in _load(KUBERAY / "pvc.yaml") if d["kind"] == "Pod"):
        assert {c["image"] for c in pod["spec"]["containers"]} == {image}


def test_rayjob_runs_the_pipeline_with_the_runtime_env():
    (job,) = _load(KUBERAY / "rayjob.yaml")
    assert job["spec"]["entrypoint"] == "python jobs/pipeline.py --config paper --out /data/cmpipe"
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    # The submitter pod reads the source from the PVC; the rest is deploy/runtime_env.pip.yaml.
    assert env["working_dir"].startswith("/data/")
    (pip_env,) = _load(RUNTIME_ENVS[1])
    assert {k: v for k, v in env.items() if k != "working_dir"} == {
        k: v for k, v in pip_env.items() if k != "working_dir"
    }
    assert job["spec"]["shutdownAfterJobFinishes"] is True


# --- Ray cluster launcher -------------------------------------------------------------------


def test_cluster_launcher_validates_against_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    (config,) = _load(LAUNCHER)
    jsonschema.validate(config, schema)


def test_cluster_launcher_uses_the_pinned_image_and_shared_storage():
    (config,) = _load(LAUNCHER)
    image = _image()
    assert config["docker"]["image"] == image
    node_types = config["available_node_types"]
    assert {"head", "cpu", "gpu"} <= set(node_types)
    assert node_types["gpu"]["resources"]["GPU"] >= 1
    assert node_types["gpu"]["docker"]["worker_image"] == image + "-gpu"
    assert config["max_workers"] >= sum(t.get("max_workers", 0) for t in node_types.values())
    assert "-v /data:/data" in config["docker"]["run_options"]
    assert any("/data" in c and "mount" in c for c in config["initialization_commands"])
    assert any("~/cmpipe" in c for c in config["setup_commands"])
    assert REQUIRED_EXCLUDES <= set(config["rsync_exclude"])


# --- Docker image ----------------------------------------------------------------------------


def test_dockerfile_builds_from_the_pinned_image():
    text = DOCKERFILE.read_text()
    assert re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M) == [_image()]
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}"]
    assert "RAY_USAGE_STATS_ENABLED=0" in text
    assert re.search(r"OMP_NUM_THREADS=\d+", text)
    assert "pip install ." in text


# --- SLURM -----------------------------------------------------------------------------------


def test_sbatch_script_parses():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True, capture_output=True)


def test_sbatch_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not on PATH")
    result = subprocess.run([shellcheck, str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sbatch_script_runs_the_pipeline_on_its_own_ray():
    text = SBATCH.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text
    assert "jobs/pipeline.py" in text
    assert re.search(r"^RAY_ADDRESS=\S+ python jobs/pipeline.py .*--address", text, re.M)
    assert "RAY_AUTH_TOKEN_PATH" in text
    assert "trap cleanup EXIT" in text
    # `ray stop` kills every Ray process on a node, other users' included.
    assert not re.search(r"^\s*ray stop", text, re.M)


# --- token auth everywhere -------------------------------------------------------------------


def _code_lines(path):
    """Lines of a YAML or shell file that are not comments."""
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_no_deploy_config_turns_token_auth_off():
    """Nowhere in deploy/ (outside comments) is Ray's auth disabled."""
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".sbatch", ".sh", ""}:
            for line in _code_lines(path):
                assert not re.search(r"RAY_AUTH_MODE\s*=\s*[\"']?disabled|mode:\s*[\"']?disabled", line), (path, line)


def test_token_auth_is_on_in_kuberay():
    for doc in _ray_docs():
        assert _cluster_spec(doc)["authOptions"] == {"mode": "token"}, doc["kind"]


def test_token_auth_is_on_in_the_cluster_launcher():
    """Every container (head, CPU and GPU workers) runs Ray with RAY_AUTH_MODE=token and the
    token file on the shared EFS; the head writes that token, readable only by its owner, before
    Ray starts (as the SLURM script does)."""
    (config,) = _load(LAUNCHER)
    options = config["docker"]["run_options"]
    assert "-e RAY_AUTH_MODE=token" in options
    (path_option,) = [o for o in options if o.startswith("-e RAY_AUTH_TOKEN_PATH=")]
    token_path = path_option.split("=", 1)[1]
    assert token_path.startswith("/data/"), "the token must be on storage every node mounts"
    for name, node_type in config["available_node_types"].items():
        docker = node_type.get("docker", {})
        for key in ("run_options", "head_run_options", "worker_run_options"):
            for option in docker.get(key, []):
                assert "RAY_AUTH_MODE" not in option or option == "-e RAY_AUTH_MODE=token", (name, option)
    writes = [c for c in config["head_setup_commands"] if "RAY_AUTH_TOKEN_PATH" in c and "umask 077" in c]
    assert len(writes) == 1 and "secrets.token_hex" in writes[0]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert not any("RAY_AUTH_MODE" in c for c in config[key]), key


def test_token_auth_is_on_in_slurm():
    lines = _code_lines(SBATCH)
    assert "export RAY_AUTH_MODE=token" in lines
    assert any(line.startswith("export RAY_AUTH_TOKEN_PATH=$OUT/") for line in lines)
    assert any("umask 077" in line and '"$RAY_AUTH_TOKEN_PATH"' in line for line in lines)


# --- job entrypoints -------------------------------------------------------------------------


def test_deploy_names_only_known_job_scripts():
    named = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            named |= set(re.findall(r"jobs/(\w+)\.py", path.read_text()))
    assert "pipeline" in named
    assert named <= JOB_SCRIPTS, named - JOB_SCRIPTS
    missing = sorted(n for n in named if not (ROOT / "jobs" / f"{n}.py").exists())
    assert not missing, f"deploy/ names job scripts that do not exist: {missing}"
