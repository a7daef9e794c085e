"""Parsers of airlift_host_facts, fed the text real hosts produce."""

from __future__ import annotations

import airlift_hostinfo as hi

CPUINFO_LAB = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse4_2 avx avx2 avx512f
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse4_2 avx avx2 avx512f
"""
CPUINFO_THROTTLED = """model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
cpu MHz\t\t: 1200.000
flags\t\t: avx avx2
"""


def test_cpuinfo_model_clock_and_flags():
    model, mhz, flags = hi.parse_cpuinfo(CPUINFO_LAB)
    assert model == "Intel(R) Xeon(R) Processor"
    assert mhz == 2000.0
    assert {"avx2", "avx512f"} <= flags


def test_clock_prefers_cpufreq_then_model_then_cpuinfo():
    assert hi.max_clock_mhz(3_100_000, 1200.0, "x @ 2.50GHz") == (3100.0, "cpufreq")
    # No cpufreq (the lab): the model's nominal clock beats a throttled current clock.
    model, mhz, _ = hi.parse_cpuinfo(CPUINFO_THROTTLED)
    assert hi.max_clock_mhz(0, mhz, model) == (2500.0, "model")
    # No clock in the model name: the current clock is all there is.
    assert hi.max_clock_mhz(0, 2000.0, "Intel(R) Xeon(R) Processor") == (2000.0, "cpuinfo")
    assert hi.max_clock_mhz(0, 0.0, "") == (0.0, "unknown")


def test_cgroup_cpu_limits():
    assert hi.parse_cpu_max("max 100000\n") is None
    assert hi.parse_cpu_max("150000 100000\n") == 1.5
    assert hi.parse_cfs("-1", "100000") is None
    assert hi.parse_cfs("200000", "100000") == 2.0
    assert hi.usable_cores(8, 1.5) == 1.5
    assert hi.usable_cores(2, None) == 2.0
    assert hi.parse_cpuset("0-3,6\n") == 5


def test_meminfo_and_cgroup_memory():
    text = "MemTotal:        1015808 kB\nMemFree:  1 kB\nMemAvailable:     512000 kB\n"
    assert hi.parse_meminfo(text) == (992, 500)
    assert hi.parse_memory_limit("max\n") is None
    assert hi.parse_memory_limit(str(2 * 1024**3)) == 2048
    assert hi.parse_memory_limit("9223372036854771712") is None  # cgroup v1 "unlimited"


def test_listening_ports_only_in_listen_state():
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 00000000:1388 00000000:0000 0A 00000000:00000000\n"   # 5000 LISTEN
        "   1: 0100007F:1389 0100007F:D3A2 01 00000000:00000000\n"   # 5001 ESTABLISHED
    )
    assert hi.parse_listening_ports(tcp) == {5000}


def test_nvidia_smi_parsing_and_absent_gpu():
    # The H200 host's answer to airlift's query, and a two-GPU host.
    assert hi.parse_nvidia_smi("0, NVIDIA H200, 143771, 570.86.15\n") == [
        {"index": 0, "name": "NVIDIA H200", "memory_mb": 143771, "driver": "570.86.15"}]
    assert hi.parse_nvidia_smi("0, Tesla T4, 15360, 535.1\n1, A100, 40960, 535.1\n")[1] == {
        "index": 1, "name": "A100", "memory_mb": 40960, "driver": "535.1"}
    # The older two-column form is numbered in order.
    assert hi.parse_nvidia_smi("Tesla T4, 15360\nA100, 40960\n") == [
        {"index": 0, "name": "Tesla T4", "memory_mb": 15360, "driver": ""},
        {"index": 1, "name": "A100", "memory_mb": 40960, "driver": ""}]
    assert hi.parse_nvidia_smi(None) == []


# What `nvidia-ctk cdi generate` writes (shortened): nested names must not count.
CDI_YAML = """---
cdiVersion: 0.5.0
containerEdits:
  deviceNodes:
  - path: /dev/nvidiactl
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-ctk
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: "0"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia1
  name: GPU-5f1c
- name: all
  containerEdits:
    env:
    - name: NOT_A_DEVICE
kind: nvidia.com/gpu
"""


def test_cdi_spec_devices_from_yaml_and_json(tmp_path):
    assert hi.parse_cdi_spec(CDI_YAML) == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-5f1c",
                                           "nvidia.com/gpu=all"]
    json_spec = ('{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [{"name": '
                 '"all", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}]}')
    assert hi.parse_cdi_spec(json_spec) == ["nvidia.com/gpu=all"]
    assert hi.parse_cdi_spec("devices:\n- name: x\n") == []  # no kind: no device
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    (etc / "nvidia.yaml").write_text(CDI_YAML)
    (etc / "notes.txt").write_text("kind: x")
    assert hi.cdi_devices((str(etc), str(run))) == (
        ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-5f1c", "nvidia.com/gpu=all"],
        [str(etc / "nvidia.yaml")])


def test_clock_readings_of_real_machines_without_cpufreq():
    h200 = "model name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2100.000\n"
    epyc = "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.146\n"
    for text, expected in ((h200, 2100.0), (epyc, 2596.146)):
        model, mhz, _ = hi.parse_cpuinfo(text)
        assert hi.max_clock_mhz(0, mhz, model) == (expected, "cpuinfo")


def test_disk_free_of_a_path_not_made_yet(tmp_path):
    assert hi.nearest_existing(str(tmp_path / "a" / "b")) == str(tmp_path)
    assert hi.disk_free_mb(str(tmp_path / "missing")) > 0


def test_gather_on_this_machine_has_every_field():
    facts = hi.gather(["/tmp"], "podman", ["no-such-unit.service"])
    assert facts["architecture"] == "x86_64"
    assert facts["cores_usable"] >= 1
    assert facts["memory_total_mb"] > 0
    assert facts["active_units"] == []
    assert set(facts["disk_free_mb"]) == {"/tmp"}
    # No NVIDIA driver here: no GPU, no driver; the CDI fields are always there.
    assert facts["gpus"] == [] and facts["gpu_driver"] is None
    assert isinstance(facts["cdi_devices"], list) and isinstance(facts["cdi_specs"], list)
