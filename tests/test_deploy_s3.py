"""Static checks of the bucket-backed deploy files (deploy/kuberay/rayjob-s3.yaml,
deploy/cluster-launcher/aws-s3.yaml): no shared volume anywhere, every cmpipe path an s3://
URL, token auth on, the pinned Ray image and version, and no credentials in the files.

Oracle: the installed ``ray`` package, the pin in pyproject.toml, deploy/IMAGE, Ray's own
cluster-launcher schema, and the existing shared-volume files (deploy/kuberay/rayjob.yaml,
deploy/cluster-launcher/aws.yaml) they vary. No network, no Kubernetes.
"""

import json
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RAYJOB = DEPLOY / "kuberay" / "rayjob-s3.yaml"
LAUNCHER = DEPLOY / "cluster-launcher" / "aws-s3.yaml"
README = DEPLOY / "README.md"

#: Words of a shared volume: Kubernetes volume kinds and mounts, EFS and NFS.
SHARED = re.compile(r"persistentVolumeClaim|claimName|\bnfs\b|nfs4|\befs\b|fs-\w+\.efs|hostPath|/data\b", re.I)
#: What a credential looks like in a file: AWS key ids, secret keys, session tokens, a Ray token.
CREDENTIAL = re.compile(
    r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|aws_access_key_id|aws_secret_access_key|aws_session_token|"
    r"AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|RAY_AUTH_TOKEN\s*[=:]|[0-9a-f]{40,}",
)


def _load(path):
    return list(yaml.safe_load_all(path.read_text()))


def _code_lines(path):
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _image():
    return (DEPLOY / "IMAGE").read_text().strip()


def _pinned_ray():
    (pin,) = re.findall(r'"ray(?:\[[^\]]*\])?==([^"\s;]+)"', (ROOT / "pyproject.toml").read_text())
    return pin


def _job():
    docs = _load(RAYJOB)
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    return docs, job


def _pods(job):
    """(where, pod spec) of the submitter, the head and every worker group."""
    cluster = job["spec"]["rayClusterSpec"]
    yield "submitter", job["spec"]["submitterPodTemplate"]["spec"]
    yield "head", cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


def _entrypoint_out(command: str) -> str:
    words = shlex.split(command)
    return words[words.index("--out") + 1]


# --- both files -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RAYJOB, LAUNCHER], ids=lambda p: p.name)
def test_parses_and_mounts_no_shared_volume(path):
    docs = _load(path)
    assert docs and all(isinstance(d, dict) for d in docs)
    offending = [line for line in _code_lines(path) if SHARED.search(line)]
    assert offending == [], offending


@pytest.mark.parametrize("path", [RAYJOB, LAUNCHER], ids=lambda p: p.name)
def test_holds_no_credentials(path):
    offending = [line for line in path.read_text().splitlines() if CREDENTIAL.search(line)]
    assert offending == [], offending


def test_the_credential_check_would_catch_one():
    for line in ("AWS_SECRET_ACCESS_KEY: abc", "- -e AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP",
                 "aws_secret_access_key = x", "RAY_AUTH_TOKEN: 0123", "key: " + "ab" * 20):
        assert CREDENTIAL.search(line), line
    assert SHARED.search("claimName: cmpipe-data") and SHARED.search("mount -t nfs4 fs-1.efs.x.amazonaws.com:/ /data")


@pytest.mark.parametrize("path", [RAYJOB, LAUNCHER], ids=lambda p: p.name)
def test_images_are_the_pinned_image(path):
    found = set(re.findall(r"rayproject/ray:[\w.\-]+", path.read_text()))
    assert found == {_image(), _image() + "-gpu"}, found


# --- KubeRay RayJob -------------------------------------------------------------------------


def test_rayjob_writes_to_a_bucket_and_runs_its_code_from_it():
    _, job = _job()
    out = _entrypoint_out(job["spec"]["entrypoint"])
    assert job["spec"]["entrypoint"].startswith("python jobs/pipeline.py ")
    assert out.startswith("s3://")
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert env["working_dir"].startswith("s3://") and env["working_dir"].endswith(".zip")
    assert env["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}[s3]"]
    (pip_env,) = _load(DEPLOY / "runtime_env.pip.yaml")
    assert env["env_vars"] == pip_env["env_vars"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_keeps_auth_and_the_pinned_ray_version():
    _, job = _job()
    cluster = job["spec"]["rayClusterSpec"]
    assert job["apiVersion"] == "ray.io/v1"
    assert cluster["rayVersion"] == ray.__version__ == _pinned_ray()
    assert cluster["authOptions"] == {"mode": "token"}
    assert cluster["enableInTreeAutoscaling"] is True


def test_rayjob_pods_have_no_shared_volume_and_ray_pods_the_bucket_role():
    docs, job = _job()
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    image = _image()
    for where, pod in _pods(job):
        for volume in pod.get("volumes", []):
            assert set(volume) == {"name", "emptyDir"}, (where, volume)  # node-local only
        for container in pod["containers"]:
            assert container["image"] == (image + "-gpu" if where == "gpu" else image), where
            assert {m["mountPath"] for m in container.get("volumeMounts", [])} <= {"/dev/shm"}, where
        if where != "submitter":
            assert pod["serviceAccountName"] == account["metadata"]["name"], where
    groups = {g["groupName"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert groups == {"cpu", "gpu"}


# --- Ray cluster launcher ---------------------------------------------------------------------


def test_launcher_validates_against_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    (config,) = _load(LAUNCHER)
    jsonschema.validate(config, schema)


def test_launcher_mounts_nothing_and_installs_the_s3_extra():
    (config,) = _load(LAUNCHER)
    assert config["docker"]["image"] == _image()
    assert not any(o.startswith("-v ") or "--volume" in o or "--mount" in o for o in config["docker"]["run_options"])
    assert "initialization_commands" not in config
    assert any('"$HOME/cmpipe[s3]"' in c for c in config["setup_commands"])
    types = config["available_node_types"]
    assert types["gpu"]["docker"]["worker_image"] == _image() + "-gpu"
    assert any('"$HOME/cmpipe[s3]"' in c for c in types["gpu"]["worker_setup_commands"])
    for name, node_type in types.items():
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
    assert config["max_workers"] >= sum(t.get("max_workers", 0) for t in types.values())


def test_launcher_keeps_token_auth_with_a_token_from_the_submitting_machine():
    (config,) = _load(LAUNCHER)
    options = config["docker"]["run_options"]
    assert "-e RAY_AUTH_MODE=token" in options
    (path_option,) = [o for o in options if o.startswith("-e RAY_AUTH_TOKEN_PATH=")]
    token_path = path_option.split("=", 1)[1]
    assert token_path == "/home/ray/.ray-auth/token"
    assert config["file_mounts"]["~/.ray-auth/token"] == "~/.ray/auth_token"
    assert any("test -s \"$RAY_AUTH_TOKEN_PATH\"" in c and "exit 1" in c for c in config["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert not any("RAY_AUTH_MODE" in c for c in config[key]), key


def test_launcher_differs_from_the_efs_file_only_in_storage_credentials_and_auth():
    """Same node types, instance types, images and start commands as aws.yaml."""
    (efs,) = _load(DEPLOY / "cluster-launcher" / "aws.yaml")
    (s3,) = _load(LAUNCHER)
    assert s3["provider"] == efs["provider"] and s3["auth"] == efs["auth"]
    assert s3["head_start_ray_commands"] == efs["head_start_ray_commands"]
    assert s3["worker_start_ray_commands"] == efs["worker_start_ray_commands"]
    for name, node_type in efs["available_node_types"].items():
        other = s3["available_node_types"][name]
        assert other["resources"] == node_type["resources"]
        assert other["node_config"]["InstanceType"] == node_type["node_config"]["InstanceType"]
    assert s3["rsync_exclude"] == efs["rsync_exclude"]


# --- README -----------------------------------------------------------------------------------


def test_readme_walks_through_a_bucket_run():
    text = README.read_text()
    for name in ("kuberay/rayjob-s3.yaml", "cluster-launcher/aws-s3.yaml"):
        assert name in text, name
    submits = re.findall(r"ray job submit[^`]*?--out (s3://\S+)", text, re.S)
    assert submits, "no `ray job submit ... --out s3://...` in deploy/README.md"
    assert "AWS_ENDPOINT_URL" in text  # S3-compatible servers (MinIO, Ceph) and where credentials come from
