#!/usr/bin/python
# Apache-2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: airlift_host_facts
short_description: Gather what a host can give to disconnected AI containers
description:
  - Reads what Ansible's facts do not, cheaply and without changing anything - usable
    cores (CPU affinity capped by a cgroup quota), the CPU's maximum clock (cpufreq,
    else the model string, else /proc/cpuinfo), AVX flags, memory (capped by a cgroup
    limit), free disk for given paths, the container engine's version, whether systemd
    is init, listening TCP ports and NVIDIA GPUs (index, name, memory and driver, from
    nvidia-smi), and what hands GPUs to containers - the devices of the CDI specs in
    /etc/cdi and /var/run/cdi (podman), the nvidia-container-runtime-hook and docker's
    runtimes (docker).
  - Sets the C(airlift_host) fact. Preflight evaluates it against the catalog.
version_added: "0.1.0"
options:
  paths:
    description: Directories whose free space is reported (the nearest existing parent
      is measured when a path does not exist yet).
    type: list
    elements: path
    default: [/var/lib/containers]
  engine:
    description: Container engine whose client version is reported.
    type: str
    choices: [podman, docker]
    default: podman
  units:
    description: systemd units whose active state is reported, so that preflight can
      tell a port held by airlift's own service from a clash.
    type: list
    elements: str
    default: []
author:
  - airlift developers
"""

EXAMPLES = r"""
- name: Gather host capacity for preflight
  airlift_host_facts:
    engine: podman
    paths:
      - /var/lib/containers
      - /var/lib/airlift
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    airlift_host:
      description: Capacity of the host.
      type: dict
      returned: always
      sample:
        architecture: x86_64
        cpu_model: Intel(R) Xeon(R) Processor
        cpu_max_mhz: 2596.146
        cpu_mhz_source: cpuinfo
        cpu_flags: [avx, avx2, avx512f]
        cores_online: 2
        cores_usable: 2.0
        memory_total_mb: 23000
        memory_available_mb: 22000
        disk_free_mb: {/var/lib/containers: 80000}
        engine: podman
        engine_version: 4.3.1
        init_is_systemd: true
        listening_ports: [22]
        gpus:
          - {index: 0, name: NVIDIA H200, memory_mb: 143771, driver: 570.86.15}
        gpu_driver: 570.86.15
        cdi_devices: [nvidia.com/gpu=0, nvidia.com/gpu=all]
        cdi_specs: [/etc/cdi/nvidia.yaml]
        nvidia_hook: /usr/bin/nvidia-container-runtime-hook
        docker_runtimes: []
        active_units: [airlift-sentiment.service]
"""

from ansible.module_utils import airlift_layout as layout
from ansible.module_utils.airlift_hostinfo import gather
from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "default": [layout.CONTAINERS_DIR]},
            "engine": {"type": "str", "choices": ["podman", "docker"], "default": "podman"},
            "units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    facts = gather(module.params["paths"], module.params["engine"], module.params["units"])
    module.exit_json(changed=False, ansible_facts={"airlift_host": facts})


if __name__ == "__main__":
    main()
