# syntax=docker/dockerfile:1
# The agentray image, CPU build: agentray, Ray and their dependencies (scripts/install.sh) on
# Debian 12, with bubblewrap (the OS tasks' sandbox), Java 17 (ScienceWorld) and chromium +
# chromedriver (MiniWoB++). Dockerfile.cuda is the GPU build the cluster recipes run.
#
#   docker build -t ghcr.io/agentray/agentray:latest .
#   docker push ghcr.io/agentray/agentray:latest          # or your registry's name for it
#   docker run --rm --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       --security-opt systempaths=unconfined --cap-add SYS_ADMIN \
#       ghcr.io/agentray/agentray:latest agentray quickstart
#
# bubblewrap runs every OS-task command in its own user, pid, network and mount namespaces
# with a fresh /proc. Docker's defaults forbid that: its seccomp profile refuses new user
# namespaces, its AppArmor profile refuses mount(), and its masked /proc paths make the
# kernel refuse a new procfs ("mount too revealing"); hence the three --security-opt above
# (--privileged also works); --cap-add SYS_ADMIN lets agentray mount each OS episode's
# size-limited scratch tmpfs (without it, set envs.os.scratch_mb: null). The host must allow
# unprivileged user namespaces (the sandbox runs as an unprivileged uid): on Ubuntu >= 23.10
# hosts, sysctl kernel.apparmor_restrict_unprivileged_userns=0. Without them the OS family and
# HumanEval report that bubblewrap is unusable; everything else runs.
#
# No ENTRYPOINT: the Ray cluster launcher starts the container with `bash` and KubeRay sets
# its own command. The image runs as root (both expect it); AGENTRAY_HOME and HF_HOME are
# writable by any user for `docker run --user`.
FROM python:3.11-slim-bookworm

# The Ray version the cluster recipes pin (clusters/kuberay/*.yaml rayVersion): the laptop
# that runs `ray up` / `ray job submit` should have the same one.
ARG RAY_VERSION=2.60.0
# scripts/install.sh's default torch, here the CPU wheel from PyTorch's CPU index.
ARG TORCH_VERSION=2.13.0

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

# bubblewrap: the OS tasks' sandbox; default-jre-headless (Java 17): ScienceWorld; chromium,
# chromium-driver: MiniWoB++; build-essential: DeepSpeed builds its CPU Adam on first use;
# rsync, openssh-client: the Ray cluster launcher syncs files and reaches workers from the
# head's container; wget: KubeRay's probes for older Ray versions. man1: the JRE's
# update-alternatives links its man pages there, and slim images lack the folder.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        bubblewrap default-jre-headless chromium chromium-driver \
        build-essential git curl wget ca-certificates rsync openssh-client procps \
    && rm -rf /var/lib/apt/lists/*

# Where agentray builds its per-machine assets (the tiny model, env assets) and where Hugging
# Face caches weights. scripts/install.sh installs into $AGENTRAY_VENV: here the image's own
# Python (/usr/local), so agentray, ray and python are on every shell's PATH (the launcher
# and KubeRay run login shells, which reset PATH).
ENV AGENTRAY_HOME=/var/lib/agentray \
    HF_HOME=/var/cache/huggingface \
    AGENTRAY_VENV=/usr/local
RUN mkdir -p "$AGENTRAY_HOME" "$HF_HOME" && chmod 1777 "$AGENTRAY_HOME" "$HF_HOME"

WORKDIR /opt/agentray
COPY . .

# torch first (install.sh keeps an installed torch), then install.sh with Ray pinned; boto3
# for the Ray autoscaler's AWS node provider on a launcher head.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
    && printf 'ray==%s\n' "$RAY_VERSION" > /tmp/ray-pin.txt \
    && PIP_CONSTRAINT=/tmp/ray-pin.txt bash scripts/install.sh \
    && PIP_CONSTRAINT=/tmp/ray-pin.txt pip install boto3 \
    && python -c "import agentray, ray, torch; assert ray.__version__ == '${RAY_VERSION}'" \
    && agentray --help > /dev/null
