"""Preflight checks from synthetic facts: every check, its edges, waivers."""

from __future__ import annotations

import datetime as dt

import pytest

from airlift import catalog, checks

CATALOG = catalog.load()
THRESHOLDS = {"min_ghz": 2.6, "memory_tolerance": 0.05, "disk_required_mb": 1000,
              "disk_headroom": 1.5}


def facts(**overrides):
    base = {
        "architecture": "x86_64", "cpu_model": "x", "cpu_max_mhz": 3000.0,
        "cpu_mhz_source": "cpufreq", "cpu_flags": ["avx", "avx2", "avx512f"],
        "cores_online": 16, "cores_usable": 16.0, "memory_total_mb": 64 * 1024,
        "memory_available_mb": 60 * 1024, "disk_free_mb": {"/var/lib/containers": 50_000},
        "engine": "podman", "engine_version": "4.3.1", "init_is_systemd": True,
        "listening_ports": [22], "gpus": [], "active_units": [],
    }
    return {**base, **overrides}


def by_id(results, check, subject=None):
    found = [r for r in results if r["id"] == check and subject in (None, r["subject"])]
    assert found, f"no result for {check}"
    return found[0]


def run(services, **fact_overrides):
    return checks.host_checks(facts(**fact_overrides), services, CATALOG, THRESHOLDS)


SENTIMENT = {"name": "sentiment", "catalog": "sentiment", "port": 5000}


def test_healthy_host_passes_everything():
    results = run([{**SENTIMENT, "cpus": 4, "memory": "8g"}])
    assert checks.failures(results) == []
    assert all(r["status"] == "PASS" for r in results)


@pytest.mark.parametrize(("mhz", "status"), [(2586.0, "FAIL"), (2587.0, "PASS"),
                                            (2600.0, "PASS")])
def test_clock_edge_with_half_a_percent_tolerance(mhz, status):
    result = by_id(run([SENTIMENT], cpu_max_mhz=mhz, cpu_mhz_source="cpuinfo"),
                   "host.cpu_clock")
    assert result["status"] == status


@pytest.mark.parametrize("source", ["cpufreq", "model"])
def test_clock_tolerance_is_only_for_a_measured_cpuinfo_reading(source):
    # cpufreq and the model string state the rated clock: 2590 MHz is a slower part.
    result = by_id(run([SENTIMENT], cpu_max_mhz=2590.0, cpu_mhz_source=source),
                   "host.cpu_clock")
    assert result["status"] == "FAIL"
    assert result["observed"] == f"2590 MHz ({source})"
    assert "hypervisor" not in result["message"]
    assert result["message"].startswith(
        f"the CPU runs below 2600 MHz ({source} states the rated clock, no tolerance "
        "applies)")
    assert by_id(run([SENTIMENT], cpu_max_mhz=2600.0, cpu_mhz_source=source),
                 "host.cpu_clock")["status"] == "PASS"


def test_clock_of_a_hypervisor_reading_passes_with_a_note():
    # The 2-core AMD EPYC machine: /proc/cpuinfo says 2596.146 MHz, no cpufreq.
    result = by_id(run([SENTIMENT], cpu_max_mhz=2596.146, cpu_mhz_source="cpuinfo"),
                   "host.cpu_clock")
    assert result["status"] == "PASS"
    assert (result["expected"], result["observed"]) == (">= 2600 MHz", "2596 MHz (cpuinfo)")
    assert result["message"] == ("2596.146 MHz is within 0.5 % of 2600 MHz: read as that "
                                 "nominal clock (a hypervisor's measured reading)")


def test_clock_of_the_h200_host_fails_naming_the_source():
    result = by_id(run([SENTIMENT], cpu_max_mhz=2100.0, cpu_mhz_source="cpuinfo"),
                   "host.cpu_clock")
    assert result["status"] == "FAIL"
    assert (result["expected"], result["observed"]) == (">= 2600 MHz", "2100 MHz (cpuinfo)")
    assert "below 2600 MHz" in result["message"]
    # A tighter tolerance turns the hypervisor reading into a failure too.
    tight = checks.host_checks(facts(cpu_max_mhz=2596.146, cpu_mhz_source="cpuinfo"),
                               [SENTIMENT], CATALOG,
                               {**THRESHOLDS, "clock_tolerance": 0.001})
    assert by_id(tight, "host.cpu_clock")["status"] == "FAIL"


def test_cores_limited_by_cgroup_fail_the_sum():
    services = [{**SENTIMENT, "cpus": 4}, {"name": "kp", "catalog": "key-phrase",
                                           "port": 5001, "cpus": 1}]
    result = by_id(run(services, cores_online=16, cores_usable=4.0), "host.cores")
    assert result["status"] == "FAIL"
    assert (result["expected"], result["observed"]) == ("5", "4")


def test_memory_tolerance_accepts_nominal_shortfall_only():
    one_gig = [{"name": "s", "catalog": "sim-sentiment", "port": 5000, "memory": "1g"}]
    assert by_id(run(one_gig, memory_total_mb=992), "host.memory")["status"] == "PASS"
    assert by_id(run(one_gig, memory_total_mb=900), "host.memory")["status"] == "FAIL"


def test_service_minimum_fails_and_below_recommended_warns():
    low = by_id(run([{**SENTIMENT, "cpus": 0.5, "memory": "1g"}]), "service.cores")
    assert low["status"] == "FAIL"
    mid = by_id(run([{**SENTIMENT, "cpus": 2, "memory": "4g"}]), "service.memory")
    assert mid["status"] == "WARN"
    assert mid["expected"] == ">= 2.0 GiB (recommended 8.0 GiB)"


def test_translator_memory_grows_with_language_pairs():
    service = {"name": "tr", "catalog": "translator", "port": 5000, "cpus": 4,
               "memory": "6g", "language_pairs": 3}
    assert by_id(run([service]), "service.memory")["status"] == "FAIL"  # needs 4g + 2x2g


def test_required_and_recommended_instruction_sets():
    read = {"name": "read", "catalog": "vision-read", "port": 5000}
    assert by_id(run([read], cpu_flags=["avx"]), "host.cpu_flags")["status"] == "FAIL"
    ner = {"name": "ner", "catalog": "ner", "port": 5001}
    assert by_id(run([ner], cpu_flags=["avx2"]),
                 "host.cpu_flags_recommended")["status"] == "WARN"


GPU_SVC = {"name": "sum", "catalog": "summarization-gpu", "port": 5000}
H200 = {"index": 0, "name": "NVIDIA H200", "memory_mb": 143771, "driver": "570.86.15"}
CDI_ALL = ["nvidia.com/gpu=0", "nvidia.com/gpu=1", "nvidia.com/gpu=all"]
GPU_HOST = {"gpus": [H200], "gpu_driver": "570.86.15", "cdi_devices": CDI_ALL,
            "cdi_specs": ["/etc/cdi/nvidia.yaml"]}


def test_gpu_needed_and_absent_names_driver_and_toolkit():
    results = run([GPU_SVC], gpus=[])
    assert by_id(results, "host.gpu")["status"] == "FAIL"
    assert by_id(results, "host.gpu")["observed"] == "GPU 0 absent"
    driver = by_id(results, "host.gpu_driver")
    assert driver["status"] == "FAIL" and "install the NVIDIA driver" in driver["message"]
    runtime = by_id(results, "host.gpu_runtime")
    assert runtime["status"] == "FAIL"
    assert runtime["observed"] == ("nvidia.com/gpu=0 in no CDI spec (no spec in /etc/cdi or "
                                   "/var/run/cdi)")
    assert "install nvidia-container-toolkit" in runtime["message"]
    assert "nvidia-ctk cdi generate" in runtime["message"]


def test_h200_host_passes_every_gpu_check():
    results = run([{**GPU_SVC, "cpus": 2, "memory": "24g"}], **GPU_HOST)
    assert checks.failures(results) == []
    gpu = by_id(results, "host.gpu", "sum")
    assert gpu["expected"] == "nvidia GPU 0 >= 16.0 GiB"
    assert gpu["observed"] == "GPU 0 NVIDIA H200 140.4 GiB"
    assert by_id(results, "host.gpu_count")["expected"] == ">= 1 GPU(s) (sum -> GPU 0)"
    assert by_id(results, "host.gpu_runtime")["observed"] == "in /etc/cdi/nvidia.yaml"


def test_no_gpu_checks_for_a_host_without_gpu_services():
    ids = {r["id"] for r in run([SENTIMENT])}
    assert not ids & {"host.gpu", "host.gpu_count", "host.gpu_driver", "host.gpu_runtime"}


def test_two_gpu_services_need_two_gpus_and_the_fail_names_the_fixes():
    two = [GPU_SVC, {**GPU_SVC, "name": "sum2", "port": 5001}]
    count = by_id(run(two, **GPU_HOST), "host.gpu_count")
    assert count["status"] == "FAIL"
    assert (count["expected"], count["observed"]) == (">= 2 GPU(s) (sum -> GPU 0; sum2 -> GPU 1)",
                                                      "1")
    assert "gpu_shared: true" in count["message"] and "add GPUs" in count["message"]
    assert by_id(run(two, **GPU_HOST), "host.gpu", "sum2")["status"] == "FAIL"


def test_shared_gpu_sums_the_memory_of_its_services():
    shared = [{**GPU_SVC, "gpu_shared": True},
              {**GPU_SVC, "name": "sum2", "port": 5001, "gpu_shared": True}]
    small = {**GPU_HOST, "gpus": [{**H200, "name": "T4", "memory_mb": 24000}]}
    result = by_id(run(shared, **small), "host.gpu", "sum")
    assert result["status"] == "FAIL"  # 2 x 16 GiB on one 24 GB GPU
    assert result["expected"] == "nvidia GPU 0 >= 32.0 GiB with sum2"
    assert by_id(run(shared, **GPU_HOST), "host.gpu", "sum")["status"] == "PASS"
    assert by_id(run(shared, **GPU_HOST), "host.gpu_count")["status"] == "PASS"


def test_docker_needs_the_nvidia_hook_or_runtime():
    # GPU_HOST has a CDI spec providing nvidia.com/gpu: docker units use --gpus, so the
    # spec alone (without the NVIDIA hook or runtime) does not let docker hand GPUs over.
    docker = {**GPU_HOST, "engine": "docker"}
    assert docker["cdi_devices"]
    missing = by_id(run([GPU_SVC], **docker), "host.gpu_runtime")
    assert missing["status"] == "FAIL"
    assert missing["observed"] == "neither"
    assert missing["message"] == (
        "docker units hand GPUs over with --gpus, not CDI: install nvidia-container-toolkit "
        "on the host and register its runtime with docker: nvidia-ctk runtime configure "
        "--runtime=docker && systemctl restart docker")
    for extra in ({"nvidia_hook": "/usr/bin/nvidia-container-runtime-hook"},
                  {"docker_runtimes": ["io.containerd.runc.v2", "nvidia", "runc"]}):
        assert by_id(run([GPU_SVC], **docker, **extra), "host.gpu_runtime")["status"] == "PASS"


def test_cdi_spec_without_the_asked_index_fails():
    result = by_id(run([{**GPU_SVC, "gpus": [1]}], **{**GPU_HOST, "cdi_devices": [
        "nvidia.com/gpu=0"]}), "host.gpu_runtime")
    assert result["status"] == "FAIL"
    assert result["observed"].startswith("nvidia.com/gpu=1 in no CDI spec (specs: /etc/cdi/")


def test_inventory_gpu_conflict_fails_before_any_host():
    results = inventory(airlift_services=[{**GPU_SVC, "gpus": [0]},
                                          {**GPU_SVC, "name": "b", "port": 5001,
                                           "gpus": [0]}])
    gpus = next(r for r in results if r["id"] == "inventory.gpus")
    assert gpus["status"] == "FAIL"
    assert gpus["message"] == ("sum and b both ask for GPU 0: give each its own (gpus: [N]) "
                               "or set gpu_shared: true on both")
    ok = next(r for r in inventory(airlift_services=[GPU_SVC]) if r["id"] == "inventory.gpus")
    assert (ok["status"], ok["observed"]) == ("PASS", "sum -> GPU 0")


def test_port_taken_by_another_program_but_not_by_own_unit():
    assert by_id(run([SENTIMENT], listening_ports=[5000]), "host.ports")["status"] == "FAIL"
    own = run([SENTIMENT], listening_ports=[5000], active_units=["airlift-sentiment.service"])
    assert by_id(own, "host.ports")["status"] == "PASS"


def test_disk_engine_init_architecture():
    results = run([SENTIMENT], disk_free_mb={"/var": 1000}, engine_version=None,
                  init_is_systemd=False, architecture="aarch64")
    for check in ("host.disk", "host.engine", "host.init", "host.architecture"):
        assert by_id(results, check)["status"] == "FAIL", check
    assert by_id(results, "host.disk")["expected"] == ">= 1.5 GiB"


def test_docker_installed_but_its_daemon_down_is_named_with_the_fix():
    # docker units need dockerd: the host fact asks the daemon, so a stopped daemon is
    # no version; installed tells it apart from a missing docker.
    down = by_id(run([SENTIMENT], engine="docker", engine_version=None,
                     engine_installed=True), "host.engine")
    assert (down["status"], down["observed"], down["message"]) == (
        "FAIL", "docker installed, its daemon does not answer",
        "start the daemon: systemctl enable --now docker.service")
    missing = by_id(run([SENTIMENT], engine="docker", engine_version=None,
                        engine_installed=False), "host.engine")
    assert (missing["status"], missing["observed"]) == ("FAIL", "not installed")
    running = by_id(run([SENTIMENT], engine="docker", engine_version="20.10.24+dfsg1",
                        engine_installed=True), "host.engine")
    assert (running["status"], running["expected"], running["observed"]) == (
        "PASS", "docker", "20.10.24+dfsg1")


def inventory(**host_vars):
    base = {"airlift_eula": "accept", "airlift_container_engine": "podman",
            "airlift_services": [SENTIMENT], "airlift_waivers": []}
    return checks.inventory_checks({**base, **host_vars}, CATALOG)


def test_inventory_valid():
    assert checks.failures(inventory()) == []


def test_inventory_problems_name_their_fix():
    results = inventory(
        airlift_eula="", airlift_container_engine="lxc",
        airlift_services=[
            {"name": "a", "catalog": "sentimnet", "port": 5000},
            {"name": "a", "catalog": "sentiment", "port": 5000, "memory": "8 gigs",
             "cpus": -1},
        ],
        airlift_waivers=[{"check": "host.clock", "justification": "x", "expires": "2030-01-01"}],
    )
    text = "\n".join(checks.failures(results))
    assert "set airlift_eula: accept" in text
    assert "airlift_container_engine to one of podman, docker" in text
    assert "unknown catalog entry 'sentimnet'; valid:" in text and "sentiment," in text
    assert "repeated: a" in text and "repeated: 5000" in text
    assert "memory '8 gigs'" in text and "cpus -1" in text
    assert "unknown check id 'host.clock'" in text


def test_dependency_missing_on_the_host_is_an_inventory_failure():
    custom = {"name": "custom", "catalog": "di-custom-template", "port": 5001}
    layout = {"name": "layout", "catalog": "di-layout", "port": 5002}
    text = "\n".join(checks.failures(inventory(airlift_services=[custom])))
    assert "needs a di-layout service on the same host for AzureCognitiveServiceLayoutHost" in text
    assert "add one to this host's airlift_services" in text
    fine = by_id(inventory(airlift_services=[custom, layout]), "inventory.dependencies")
    assert fine["status"] == "PASS" and fine["observed"] == "custom -> layout"


def test_the_proxy_is_not_a_service_to_list():
    text = "\n".join(checks.failures(inventory(airlift_services=[
        {"name": "proxy", "catalog": "airlift-frontdoor", "port": 8443}])))
    assert "run by airlift itself" in text and "airlift_frontdoor_enabled: true" in text


def test_service_may_not_take_the_front_door_unit_name():
    text = "\n".join(checks.failures(inventory(airlift_services=[
        {"name": "frontdoor", "catalog": "sentiment", "port": 5000}])))
    assert "rename service 'frontdoor'" in text


def test_waiver_without_justification_or_date_is_invalid():
    text = "\n".join(checks.failures(inventory(airlift_waivers=[
        {"check": "host.cpu_clock", "expires": "soon"}])))
    assert "needs a justification" in text and "needs expires as a date" in text


def test_waivers_turn_failure_into_waived_until_they_expire():
    results = run([SENTIMENT], cpu_max_mhz=2000.0)
    waiver = {"check": "host.cpu_clock", "justification": "lab", "expires": "2027-12-31"}
    waived = by_id(checks.apply_waivers(results, [waiver], today=dt.date(2027, 1, 1)),
                   "host.cpu_clock")
    assert waived["status"] == "WAIVED" and "lab" in waived["message"]
    expired = by_id(checks.apply_waivers(results, [waiver], today=dt.date(2028, 1, 1)),
                    "host.cpu_clock")
    assert expired["status"] == "FAIL" and "waiver expired on 2027-12-31" in expired["message"]


def test_waiver_subject_limits_it_to_one_service():
    results = run([{**SENTIMENT, "cpus": 0.5}, {"name": "b", "catalog": "sentiment",
                                                "port": 5001, "cpus": 0.5}])
    waived = checks.apply_waivers(results, [{"check": "service.cores", "subject": "b",
                                             "justification": "j", "expires": "2999-01-01"}])
    assert by_id(waived, "service.cores", "b")["status"] == "WAIVED"
    assert by_id(waived, "service.cores", "sentiment")["status"] == "FAIL"


def test_catalog_overrides_merge_recursively():
    merged = catalog.load({"sentiment": {"cores": {"minimum": 2}}, "new": {"title": "n"}})
    assert merged["sentiment"]["cores"] == {"minimum": 2, "recommended": 4}
    assert merged["sentiment"]["image"].endswith("textanalytics/sentiment:latest")
    assert "new" in merged


MANIFEST = {
    "images": [{"ref": CATALOG["sentiment"]["image"], "size": 3 * 1024 * 1024 * 1024}],
    "licenses": [{"catalog": "sentiment", "expires": "2027-01-31T00:00:00+00:00"}],
}


def test_disk_need_comes_from_the_bundle_when_there_is_one():
    results = checks.host_checks(facts(disk_free_mb={"/var/lib/containers": 8000}),
                                 [SENTIMENT], CATALOG, THRESHOLDS, MANIFEST)
    disk = by_id(results, "host.disk")
    assert disk["status"] == "FAIL"          # 3 GiB archive + 3 GiB image, x1.5 = 9 GiB
    assert disk["expected"] == ">= 9.0 GiB"


GIB = 1024 * 1024 * 1024


@pytest.mark.parametrize("free", [8000, 9215, 9216, 9217, 50_000])
def test_transfer_is_refused_exactly_where_preflight_fails_host_disk(free):
    # A host without the image: distribute's need is preflight's (3 + 3 GiB, x1.5).
    paths = {"/var/lib/containers": 50_000, "/var/lib/airlift/staging": free}
    preflight = checks.host_checks(facts(disk_free_mb=paths), [SENTIMENT], CATALOG,
                                   THRESHOLDS, MANIFEST)
    flagged = {r["subject"] for r in preflight if r["id"] == "host.disk"
               and r["status"] == "FAIL"}
    refusal = checks.transfer_refusal([3 * GIB], paths, THRESHOLDS["disk_headroom"],
                                      "/var/lib/airlift/staging")
    assert (refusal is not None) == bool(flagged) == (free < 9216)


def test_transfer_refusal_names_path_need_free_and_fix():
    refusal = checks.transfer_refusal(
        [200 * 1024 * 1024], {"/mnt/tiny/staging": 20, "/var/lib/containers": 500}, 1.5,
        "/mnt/tiny/staging")
    assert refusal == (
        "not enough disk on the host: 1 image(s) need 600 MiB free on each of "
        "/mnt/tiny/staging, /var/lib/containers (archive + loaded image, times "
        "airlift_preflight_disk_headroom 1.5, as preflight's host.disk); "
        "/mnt/tiny/staging has 20 MiB free; /var/lib/containers has 500 MiB free: free "
        "space there, or set airlift_distribute_staging_dir to a directory on a larger disk")


def test_transfer_refusal_counts_the_headroom_and_only_what_moves():
    free = {"/var/lib/containers": 500, "/var/lib/airlift/staging": 5000}
    mib = 1024 * 1024
    assert checks.transfer_refusal([200 * mib], free, 1.0, "/var/lib/airlift/staging") is None
    short = checks.transfer_refusal([200 * mib], free, 1.5, "/var/lib/airlift/staging")
    assert "need 600 MiB" in short and "/var/lib/containers has 500 MiB free" in short
    assert "airlift_distribute_staging_dir" not in short    # the staging dir is not short
    assert checks.transfer_refusal([], {"/var/lib/containers": 0}, 1.5, "/x") is None


@pytest.mark.parametrize(("today", "status"), [
    ("2026-11-01", "PASS"), ("2027-01-10", "WARN"), ("2027-02-01", "FAIL")])
def test_license_expiry_against_the_warning_window(today, status):
    now = dt.datetime.fromisoformat(today).replace(tzinfo=dt.UTC)
    result = checks.license_checks([SENTIMENT], CATALOG, MANIFEST, 30, now=now)[0]
    assert result["status"] == status
    assert result["observed"] == "expires 2027-01-31"


def test_service_without_a_license_in_the_bundle_fails():
    result = checks.license_checks([{"name": "r", "catalog": "vision-read", "port": 1}],
                                   CATALOG, MANIFEST, 30)[0]
    assert result["status"] == "FAIL" and "stage the bundle again" in result["message"]


def test_date_only_license_expiry_means_the_end_of_that_day():
    manifest = {"images": [], "licenses": [{"catalog": "sentiment", "expires": "2027-01-31"}]}
    late = dt.datetime(2027, 1, 31, 23, 0, tzinfo=dt.UTC)
    assert checks.license_checks([SENTIMENT], CATALOG, manifest, 0, now=late)[0]["status"] \
        == "PASS"
    after = dt.datetime(2027, 2, 1, 0, 1, tzinfo=dt.UTC)
    assert checks.license_checks([SENTIMENT], CATALOG, manifest, 0, now=after)[0]["status"] \
        == "FAIL"


def test_latest_matching_waiver_counts_and_expiry_keeps_a_warning_a_warning():
    results = run([SENTIMENT], cpu_max_mhz=2000.0)
    old = {"check": "host.cpu_clock", "justification": "old", "expires": "2020-01-01"}
    renewed = {"check": "host.cpu_clock", "justification": "renewed", "expires": "2999-01-01"}
    assert by_id(checks.apply_waivers(results, [old, renewed]), "host.cpu_clock")["status"] \
        == "WAIVED"
    warned = run([{**SENTIMENT, "cpus": 2}])
    expired = [{"check": "service.cores", "justification": "j", "expires": "2020-01-01"}]
    assert by_id(checks.apply_waivers(warned, expired), "service.cores")["status"] == "WARN"


def test_null_cpus_falls_back_to_the_catalog_minimum():
    assert by_id(run([{**SENTIMENT, "cpus": None}]), "service.cores")["observed"] == "1"


FRONT = [{"name": "sentiment", "catalog": "sim-sentiment", "port": 5000}]
ROUTE_OPTIONS = {"allowed_networks": ["10.0.0.0/8"], "host": "h1"}


def test_front_door_checks_pass_and_list_the_routes():
    results = checks.frontdoor_checks(FRONT, ROUTE_OPTIONS, [],
                                      {"listening_ports": [5000], "active_units": []})
    assert [r["status"] for r in results] == ["PASS", "PASS", "PASS"]
    assert by_id(results, "frontdoor.routes")["observed"] == "sentiment on 15000"


def test_front_door_checks_fail_with_the_fix():
    results = checks.frontdoor_checks(
        [{**FRONT[0], "name": "Bad_Name"}], ROUTE_OPTIONS, ["h1: expired: issue it again"])
    text = "\n".join(checks.failures(results))
    assert "the proxy cannot route this name" in text
    assert "expired: issue it again" in text
    # Without facts (deploy gathers none) the ports are not judged.
    assert "frontdoor.ports" not in {r["id"] for r in results}


def test_front_door_port_taken_by_another_program_fails_unless_it_is_ours():
    taken = {"listening_ports": [15000], "active_units": []}
    failed = by_id(checks.frontdoor_checks(FRONT, ROUTE_OPTIONS, [], taken), "frontdoor.ports")
    assert failed["status"] == "FAIL" and "frontdoor.port" in failed["message"]
    ours = {"listening_ports": [15000], "active_units": ["airlift-frontdoor.service"]}
    assert by_id(checks.frontdoor_checks(FRONT, ROUTE_OPTIONS, [], ours),
                 "frontdoor.ports")["status"] == "PASS"


@pytest.mark.parametrize("memory", ["4m", "1k", "0", 0, "5.9m"])
def test_memory_docker_would_refuse_is_an_inventory_failure(memory):
    results = inventory(airlift_services=[
        {"name": "a", "catalog": "sim-sentiment", "port": 5000, "memory": memory}])
    text = "\n".join(checks.failures(results))
    assert f"memory {memory!r}" in text and "at least 6m" in text


def test_smallest_memory_docker_takes_passes():
    results = inventory(airlift_services=[
        {"name": "a", "catalog": "sim-sentiment", "port": 5000, "memory": "6m"}])
    assert by_id(results, "inventory.resources")["status"] == "PASS"
