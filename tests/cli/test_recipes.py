"""The cluster recipes: the images (Dockerfile, Dockerfile.cuda), the Ray cluster launcher's
clusters/aws-gpu.yaml, the KubeRay manifests in clusters/kuberay/ and the GPU configs they
run. Nothing here builds an image or starts a cluster: each file is checked against what it
names (scripts, extras, configs, secrets, volumes, the image) and against the schema that Ray
(ray/autoscaler/ray-schema.json) or KubeRay (its CRD, tests/cli/data/) validates it with."""

from __future__ import annotations

import copy
import fnmatch
import importlib.metadata
import itertools
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from agentray.config import validate_config
from agentray.paths import check_run_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"
KUBERAY = CLUSTERS / "kuberay"
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
IMAGE = "ghcr.io/agentray/agentray:latest"  # Dockerfile
IMAGE_CUDA = "ghcr.io/agentray/agentray:latest-cuda"  # Dockerfile.cuda: what the recipes run
GPU_CONFIGS = ("agentlm-7b", "agentlm-13b", "agentlm-70b")
# README's `agentray instruct configs/my.yaml` stands for a config of one's own (a teacher).
PLACEHOLDER_CONFIGS = {"configs/my.yaml"}


def _ray_version() -> str:
    return importlib.metadata.version("ray")


# --- the images ------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined and
    comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        op, _, rest = current.partition(" ")
        out.append((op.upper(), " ".join(rest.split())))
        current = ""
    assert not current, f"{path.name} ends inside a continued line"
    return out


def _args(path: Path) -> dict[str, str]:
    return dict(arg.split("=", 1) for op, arg in _instructions(path) if op == "ARG" and "=" in arg)


def _env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in _instructions(path):
        if op == "ENV":
            env.update(token.split("=", 1) for token in shlex.split(rest))
    return env


def _runs(path: Path) -> list[str]:
    return [rest for op, rest in _instructions(path) if op == "RUN"]


def _extras() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(pyproject["project"]["optional-dependencies"])


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns keep ``rel`` (or a folder above it) out of the build
    context (the last matching pattern wins; ``!`` re-includes)."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        pattern = raw.lstrip("!").strip("/")
        forms = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(prefix, form) for prefix in prefixes for form in forms):
            ignored = not raw.startswith("!")
    return ignored


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_what_exists_and_installs_with_the_repo_install_script(name):
    path = REPO / name
    steps = _instructions(path)
    assert steps[0][0] == "FROM" or (steps[0][0] == "ARG" and steps[1][0] == "FROM")
    # no ENTRYPOINT: the Ray launcher runs `docker run ... IMAGE bash`, KubeRay its own command
    assert "ENTRYPOINT" not in {op for op, _ in steps}
    ignore = _dockerignore()
    for op, rest in steps:
        if op not in ("COPY", "ADD"):
            continue
        *sources, _dest = [t for t in shlex.split(rest) if not t.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"{name}: COPY source {source} does not exist"
            if source != ".":
                assert not _dockerignored(source, ignore), f"{name}: {source} is dockerignored"
    runs = " && ".join(_runs(path))
    for script in re.findall(r"\bscripts/[\w./-]+", runs):
        assert (REPO / script).is_file(), f"{name} runs {script}, which does not exist"
    assert "bash scripts/install.sh" in runs
    install_sh = (REPO / "scripts" / "install.sh").read_text()
    for text in (runs, install_sh):
        for extras in re.findall(r"\.\[([\w,-]+)\]", text):
            assert set(extras.split(",")) <= _extras(), f"unknown extra in {extras!r}"
    # install.sh installs into $AGENTRAY_VENV: the image's Python, whose bin is on PATH
    assert "AGENTRAY_VENV" in install_sh
    env = _env(path)
    assert env["AGENTRAY_VENV"] == "/usr/local"
    assert env["AGENTRAY_HOME"].startswith("/") and env["HF_HOME"].startswith("/")
    assert 'mkdir -p "$AGENTRAY_HOME" "$HF_HOME"' in runs  # writable for any user (1777)
    apt = " ".join(re.findall(r"apt-get install ([^&]+)", runs)).split()
    needed = {
        "bubblewrap",  # the OS tasks' and HumanEval's sandbox
        "default-jre-headless",  # ScienceWorld
        "chromium",  # MiniWoB++
        "chromium-driver",
        "rsync",  # the Ray launcher syncs into the container
        "openssh-client",  # the launcher's autoscaler on the head reaches the workers
        "build-essential",  # DeepSpeed's CPU Adam is built on first use
    }
    assert needed <= set(apt), f"{name} does not apt-get install {needed - set(apt)}"
    # Ray pinned to the version the recipes name and this machine's ray CLI has
    assert _args(path)["RAY_VERSION"] == _ray_version()
    assert "PIP_CONSTRAINT=/tmp/ray-pin.txt bash scripts/install.sh" in runs


def test_both_images_install_the_same_system_packages():
    first = [re.search(r"apt-get install ([^&]+)", _runs(REPO / n)[0]) for n in DOCKERFILES]
    assert all(first) and len({m.group(1) for m in first}) == 1


def test_cpu_image_installs_the_cpu_torch_wheel_before_the_install_script():
    runs = _runs(REPO / "Dockerfile")
    torch_step = next(i for i, run in enumerate(runs) if "download.pytorch.org/whl/cpu" in run)
    install_step = next(i for i, run in enumerate(runs) if "scripts/install.sh" in run)
    assert torch_step <= install_step
    run = runs[install_step]
    assert run.index("download.pytorch.org/whl/cpu") < run.index("scripts/install.sh")
    default = re.search(
        r"AGENTRAY_TORCH_VERSION:-([\w.+]+)", (REPO / "scripts/install.sh").read_text()
    )
    assert _args(REPO / "Dockerfile")["TORCH_VERSION"] == default.group(1)


def test_cuda_image_takes_vllm_and_its_cuda_torch_before_the_install_script():
    path = REPO / "Dockerfile.cuda"
    runs = _runs(path)
    vllm = next(i for i, run in enumerate(runs) if '".[vllm]"' in run)
    install = next(i for i, run in enumerate(runs) if "scripts/install.sh" in run)
    nvcc = next(i for i, run in enumerate(runs) if "cuda-nvcc-" in run)
    assert vllm < nvcc < install
    assert (
        "torch.version.cuda" in runs[vllm] and "import agentray, ray, torch, vllm" in runs[install]
    )
    env = _env(path)
    # the Ray launcher adds --runtime=nvidia; that runtime exposes the GPUs this variable names
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["CUDA_HOME"] == "/usr/local/cuda"


def test_dockerignore_keeps_local_state_out_and_what_the_build_needs_in():
    ignore = _dockerignore()
    for rel in (".venv/bin/python", "runs/quickstart/x", ".git/HEAD", "agentray/__pycache__/x.pyc"):
        assert _dockerignored(rel, ignore), rel
    needed = ["pyproject.toml", "scripts/install.sh", "agentray/__init__.py", "jobs/__main__.py"]
    needed += [".gitignore", "README.md", *(f"configs/{c}.yaml" for c in GPU_CONFIGS)]
    for rel in needed:
        assert (REPO / rel).exists() and not _dockerignored(rel, ignore), rel


# --- the Ray cluster launcher on AWS ---------------------------------------------------------

# The provider keys Ray's AWS node provider reads (ray-schema.json lets any through) and the
# EC2 RunInstances parameters a node_config here may use (Ray passes them to boto3 unchecked).
AWS_PROVIDER_KEYS = {
    "type",
    "region",
    "availability_zone",
    "cache_stopped_nodes",
    "use_internal_ips",
    "security_group",
    "cloudwatch",
    "disable_launch_config_check",
    "key_pair",
    "aws_credentials",
}
RUN_INSTANCES_KEYS = {
    "InstanceType",
    "ImageId",
    "BlockDeviceMappings",
    "IamInstanceProfile",
    "InstanceMarketOptions",
    "KeyName",
    "SubnetIds",
    "SecurityGroupIds",
    "NetworkInterfaces",
    "Placement",
    "TagSpecifications",
}


def _launcher_check(config: dict) -> None:
    """What `ray up` checks before it launches anything (prepare_config, then the JSON
    schema shipped with Ray), plus the keys ray-schema.json leaves open."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))
    unknown = set(config["provider"]) - AWS_PROVIDER_KEYS
    if unknown:
        raise ValueError(f"unknown provider keys {unknown}")
    for name, node_type in config["available_node_types"].items():
        unknown = set(node_type["node_config"]) - RUN_INSTANCES_KEYS
        if unknown:
            raise ValueError(f"{name}: unknown node_config keys {unknown}")


def _aws() -> dict:
    return yaml.safe_load((CLUSTERS / "aws-gpu.yaml").read_text())


def test_aws_recipe_passes_the_ray_launchers_validation():
    _launcher_check(_aws())


@pytest.mark.parametrize(
    "where",
    [(), ("docker",), ("auth",), ("provider",), ("available_node_types", "gpu_worker")]
    + [("available_node_types", "head", "node_config")],
)
def test_aws_recipe_check_refuses_an_unknown_key(where):
    config = _aws()
    node = config
    for key in where:
        node = node[key]
    node["no_such_key"] = 1
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _launcher_check(config)


def test_aws_recipe_runs_the_image_with_bubblewrap_and_s3_access():
    config = _aws()
    assert config["docker"]["image"] == IMAGE_CUDA
    options = config["docker"]["run_options"]
    for option in ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"):
        assert f"--security-opt {option}" in options
    assert f"--env AWS_REGION={config['provider']['region']}" in options
    commands = [
        command for key, value in config.items() if key.endswith("_commands") for command in value
    ]
    assert not any("|| true" in command for command in commands)
    assert any("ray start --head" in command for command in config["head_start_ray_commands"])
    # the workers get the head's role, which clusters/aws-iam-policy.json lets the head pass,
    # and every node's ImageId is a parameter the policy lets the head resolve
    policy = json.loads((CLUSTERS / "aws-iam-policy.json").read_text())
    statements = {statement["Sid"]: statement for statement in policy["Statement"]}
    pass_role = statements["HeadHandsItsRoleToWorkers"]
    role = config["available_node_types"]["gpu_worker"]["node_config"]["IamInstanceProfile"]
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"].endswith(f":role/{role['Name']}")
    ssm = statements["HeadResolvesTheDeepLearningAmi"]
    assert "ssm:GetParameters" in ssm["Action"]
    parameters = ssm["Resource"].split(":parameter", 1)[1].removesuffix("*")
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"]["ImageId"].startswith(f"resolve:ssm:{parameters}")
    gpu = config["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    assert gpu.split(".")[0] in {"p4d", "p4de", "p5", "p5e", "p5en"}
    text = (CLUSTERS / "aws-gpu.yaml").read_text()
    assert "python -m jobs pipeline --config configs/agentlm-7b.yaml --run-dir s3://" in text


# --- KubeRay ---------------------------------------------------------------------------------

KINDS = {
    ("ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayJob"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
}


def _manifests() -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in sorted(KUBERAY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def _of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in _manifests() if doc["kind"] == kind]


def _cluster_specs() -> list[tuple[str, dict]]:
    specs = [(f"RayCluster {d['metadata']['name']}", d["spec"]) for d in _of_kind("RayCluster")]
    specs += [
        (f"RayJob {d['metadata']['name']}", d["spec"]["rayClusterSpec"]) for d in _of_kind("RayJob")
    ]
    return specs


def _groups(spec: dict) -> list[tuple[str, dict]]:
    """(group name, group) for the head and every worker group of a RayCluster spec."""
    return [("head", spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in spec["workerGroupSpecs"]
    ]


def _schema() -> dict:
    return json.loads((REPO / "tests" / "cli" / "data" / "kuberay-v1.schema.json").read_text())


def test_kuberay_manifests_are_known_kinds_in_the_expected_files():
    found = {(doc["apiVersion"], doc["kind"]) for _, doc in _manifests()}
    assert found == KINDS
    by_file: dict[str, set[str]] = {}
    for path, doc in _manifests():
        by_file.setdefault(path.name, set()).add(doc["kind"])
    assert by_file == {
        "raycluster.yaml": {"RayCluster"},
        "rayjob.yaml": {"RayJob"},
        "s3-secret.yaml": {"Secret"},
        "runs-pvc.yaml": {"PersistentVolumeClaim"},
    }
    assert not (CLUSTERS / "kuberay-rayjob.yaml").exists()  # replaced by clusters/kuberay/


def test_kuberay_manifests_validate_against_kuberays_crd_schema():
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    cluster_schema = {
        "$defs": schema["$defs"],
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"$ref": "#/$defs/RayClusterSpec"},
        },
        "additionalProperties": False,
    }
    checked = 0
    for kind, kind_schema in (("RayJob", schema), ("RayCluster", cluster_schema)):
        validator = jsonschema.Draft202012Validator(kind_schema)
        for doc in _of_kind(kind):
            errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
            assert not errors, f"{kind} {doc['metadata']['name']}:\n" + "\n".join(errors)
            checked += 1
    assert checked == 2
    # the schema refuses a misspelt field, as `kubectl apply` does
    (doc,) = _of_kind("RayCluster")
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["tolerations"][0]["efect"] = "x"
    assert not jsonschema.Draft202012Validator(cluster_schema).is_valid(doc)


def test_rayjob_runs_on_the_rayclusters_spec():
    (cluster,) = _of_kind("RayCluster")
    (job,) = _of_kind("RayJob")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]


def _allows_bwrap(pod: dict, container: dict) -> bool:
    """bubblewrap needs new user namespaces (seccomp), mount() (AppArmor) and a /proc it may
    mount afresh: unmasked, which Kubernetes grants privileged containers or, with
    procMount: Unmasked, containers of pods with their own user namespace."""
    context = container.get("securityContext", {})
    unmasked = context.get("privileged") is True or (
        context.get("procMount") == "Unmasked" and pod.get("hostUsers") is False
    )
    unconfined = context.get("privileged") is True or (
        context.get("seccompProfile", {}).get("type") == "Unconfined"
        and context.get("appArmorProfile", {}).get("type") == "Unconfined"
    )
    return unmasked and unconfined


def test_ray_pods_run_the_image_with_gpus_and_bubblewrap():
    specs = _cluster_specs()
    assert len(specs) == 2
    hf_home = _env(REPO / "Dockerfile.cuda")["HF_HOME"]
    for where, spec in specs:
        assert (
            spec["rayVersion"] == _ray_version() == _args(REPO / "Dockerfile.cuda")["RAY_VERSION"]
        )
        assert spec.get("autoscalerOptions", {}).get("image", IMAGE_CUDA) == IMAGE_CUDA
        gpu_groups = 0
        for name, group in _groups(spec):
            pod = group["template"]["spec"]
            for container in pod["containers"]:
                assert container["image"] == IMAGE_CUDA, f"{where} {name}"
                # the weights cache on a pod volume, Ray's object store in shared memory
                paths = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert {hf_home, "/dev/shm"} <= paths, f"{where} {name}"
                assert _allows_bwrap(pod, container), f"{where} {name}: bubblewrap cannot run"
                mounts = {m["name"] for m in container.get("volumeMounts", [])}
                assert mounts <= {v["name"] for v in pod.get("volumes", [])}, f"{where} {name}"
            if name == "head":
                continue
            limits = pod["containers"][0]["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1, f"{where} {name}: no GPUs"
            assert limits == pod["containers"][0]["resources"]["requests"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ]
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            gpu_groups += 1
        assert gpu_groups >= 1


def test_kuberay_secrets_and_volume_claims_are_defined_in_clusters_kuberay():
    secrets_file = KUBERAY / "s3-secret.yaml"
    secrets = {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all(secrets_file.read_text())
    }
    s3 = secrets["agentray-s3"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(s3)
    assert "AWS_ENDPOINT_URL" in secrets_file.read_text()  # for S3-compatible stores
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # placeholders, clearly marked
        assert re.fullmatch(r"<[\w-]+>", s3[key]), key
    referenced: list[tuple[str, str | None]] = []
    for where, spec in _cluster_specs():
        for _, group in _groups(spec):
            for container in group["template"]["spec"]["containers"]:
                names = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
                assert "agentray-s3" in names, where
                referenced += [(name, None) for name in names]
                for env in container.get("env", []):
                    if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                        referenced.append((ref["name"], ref["key"]))
    for name, key in referenced:
        assert name in secrets, f"secret {name} is not defined in {secrets_file.name}"
        assert key is None or key in secrets[name], f"secret {name} has no key {key}"
    # volume claims, in the manifests or in the commented-out alternative
    claims = {doc["metadata"]["name"]: doc for doc in _of_kind("PersistentVolumeClaim")}
    assert all(claim["spec"]["accessModes"] == ["ReadWriteMany"] for claim in claims.values())
    text = "".join(path.read_text() for path in KUBERAY.glob("*.yaml"))
    named = set(re.findall(r"claimName:\s*([\w.-]+)", text))
    assert named and named <= set(claims), f"undefined claims {named - set(claims)}"


def test_rayjob_entrypoint_runs_a_config_of_the_repo_into_object_storage():
    (job,) = _of_kind("RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "jobs", "pipeline"]
    config = argv[argv.index("--config") + 1]
    assert (REPO / config).is_file() and config.startswith("configs/")
    run_dir = argv[argv.index("--run-dir") + 1]
    assert run_dir.startswith(("s3://", "/mnt/runs/"))
    # relative --config resolves in the working_dir: the image's checkout (Dockerfile WORKDIR)
    workdir = [rest for op, rest in _instructions(REPO / "Dockerfile.cuda") if op == "WORKDIR"]
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"] == workdir[-1]
    assert job["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode"  # uploads it


def test_every_recipe_names_the_same_images():
    for path in [*CLUSTERS.rglob("*.yaml"), *(REPO / d for d in DOCKERFILES)]:
        named = set(re.findall(r"ghcr\.io/[\w./-]+(?::[\w.-]+)?", path.read_text()))
        assert named <= {IMAGE, IMAGE_CUDA}, f"{path.name} names {named}"


# --- the configs the recipes run -------------------------------------------------------------


def _uri_run_dirs_supported() -> bool:
    try:
        check_run_dir("s3://x/y")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_load(path, tmp_path):
    data = yaml.safe_load(path.read_text())
    if path.stem in GPU_CONFIGS:
        assert data["run_dir"].startswith("s3://"), "the GPU configs write to object storage"
    # until object storage for run_dir lands, a URI is refused at load: check the rest
    if "://" in str(data.get("run_dir", "")) and not _uri_run_dirs_supported():
        data["run_dir"] = str(tmp_path / path.stem)
    validate_config(data, source=str(path))


def _expand_braces(name: str) -> list[str]:
    parts = re.split(r"\{([^{}]*)\}", name)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def test_every_config_named_in_the_recipes_readme_and_jobs_exists():
    files = [*CLUSTERS.rglob("*"), *(REPO / "jobs").rglob("*.py"), REPO / "README.md"]
    files += [REPO / d for d in DOCKERFILES]
    named: dict[str, str] = {}
    for path in files:
        if path.is_file():
            for match in re.findall(r"(?<![\w/])configs/[\w.{},-]+\.yaml", path.read_text()):
                for name in _expand_braces(match):
                    named.setdefault(name, path.relative_to(REPO).as_posix())
    assert {f"configs/{c}.yaml" for c in GPU_CONFIGS} <= set(named)
    missing = {n: w for n, w in named.items() if not (REPO / n).is_file()}
    assert set(missing) <= PLACEHOLDER_CONFIGS, f"configs named but missing: {missing}"


def test_the_gpu_check_says_it_needs_a_gpu_and_exits_2_without_one():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: benchmarks/gpu_check.sh runs for real")
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2, result.stderr
    assert "needs a CUDA GPU: torch.cuda.is_available() is False here" in result.stderr
    assert not list(REPO.glob("gpu-results"))  # nothing written
