"""The simulator's contract logic, in process (fast); the image is tested in the contract tests."""

from __future__ import annotations

import json
import threading

import pytest
import simulator as sim


def service(**env):
    return sim.Service({"AIRLIFT_SIM_SERVICE": "sentiment", "AIRLIFT_SIM_IMAGE_VERSION": "1.0",
                        **env})


def test_settings_accept_both_separators_any_case_and_arguments_win():
    settings = sim.read_settings(["mounts:license=/arg", "EULA=accept"],
                                 {"Mounts__License": "/env", "Mounts__Output": "/out"})
    assert settings["mounts:license"] == "/arg"
    assert settings["mounts:output"] == "/out"
    assert settings["eula"] == "accept"


def test_argument_without_equals_is_refused():
    with pytest.raises(sim.Refusal, match="Key=Value"):
        sim.read_settings(["Eula"], {})


def download(tmp_path, **extra):
    settings = {"billing": "https://res.cognitiveservices.azure.com", "apikey": "k",
                "mounts:license": str(tmp_path), **extra}
    return sim.download_license(settings, service())


def test_download_needs_billing_and_api_key(tmp_path):
    with pytest.raises(sim.Refusal, match="Billing"):
        sim.download_license({"apikey": "k", "mounts:license": str(tmp_path)}, service())
    with pytest.raises(sim.Refusal, match="ApiKey"):
        sim.download_license({"billing": "https://x", "mounts:license": str(tmp_path)},
                             service())


def test_downloaded_license_never_contains_the_api_key(tmp_path):
    path = download(tmp_path, apikey="secret-key-123")
    assert "secret-key-123" not in path.read_text()


def test_license_check_accepts_own_and_refuses_tampered_expired_foreign(tmp_path):
    download(tmp_path)
    assert sim.check_license({"mounts:license": str(tmp_path)}, service())["service"] == \
        "sentiment"

    other = sim.Service({"AIRLIFT_SIM_SERVICE": "read", "AIRLIFT_SIM_IMAGE_VERSION": "1.0"})
    (tmp_path / "read.license").write_text((tmp_path / "sentiment.license").read_text())
    with pytest.raises(sim.Refusal, match=r"not valid|for service"):
        sim.check_license({"mounts:license": str(tmp_path)}, other)

    newer = service(AIRLIFT_SIM_IMAGE_VERSION="1.1")
    with pytest.raises(sim.Refusal, match="image version"):
        sim.check_license({"mounts:license": str(tmp_path)}, newer)

    doc = json.loads((tmp_path / "sentiment.license").read_text())
    doc["expires"] = "2099-01-01T00:00:00+00:00"
    (tmp_path / "sentiment.license").write_text(json.dumps(doc))
    with pytest.raises(sim.Refusal, match="not valid"):
        sim.check_license({"mounts:license": str(tmp_path)}, service())

    download(tmp_path, **{"sim:licensedays": "-1"})
    with pytest.raises(sim.Refusal, match="expired"):
        sim.check_license({"mounts:license": str(tmp_path)}, service())


def test_missing_license_path_uses_the_documented_message(tmp_path):
    with pytest.raises(sim.Refusal, match="The provided license path was not found"):
        sim.check_license({"mounts:license": str(tmp_path / "nope")}, service())


def test_output_mount_is_required(tmp_path):
    with pytest.raises(sim.Refusal, match="output mount must be specified"):
        sim.check_output({})
    assert sim.check_output({"mounts:output": str(tmp_path)}) == tmp_path


def test_quantity_by_unit():
    assert service().quantity(json.dumps({"documents": [1, 2, 3]}).encode()) == 3
    assert service(AIRLIFT_SIM_UNIT="request").quantity(b"") == 1
    assert service(AIRLIFT_SIM_UNIT="audio_seconds").quantity(b"x" * 64001) == 3
    with pytest.raises(ValueError):
        service().quantity(b"{}")


def test_ledger_loses_no_record_under_concurrency_and_skips_torn_lines(tmp_path):
    ledger = sim.UsageLedger(tmp_path, service(AIRLIFT_SIM_METER="M"))
    threads = [threading.Thread(target=lambda: [ledger.append(2) for _ in range(25)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.totals() == {"M": 400}
    # A record cut off mid-write (no newline) is not counted.
    month_file = next(tmp_path.glob("usage-*.jsonl"))
    with month_file.open("a") as handle:
        handle.write('{"meter": "M", "quantity": 99')
    assert ledger.totals() == {"M": 400}
    report = ledger.report()
    assert report["serviceName"] == "sentiment"
    assert report["meters"] == [{"name": "M", "quantity": 400}]


def test_monthly_report_filters_by_month(tmp_path):
    ledger = sim.UsageLedger(tmp_path, service(AIRLIFT_SIM_METER="M"))
    ledger.append(5)
    (tmp_path / "usage-2020-01.jsonl").write_text(
        json.dumps({"service": "sentiment", "meter": "M", "quantity": 7}) + "\n")
    assert ledger.totals(1, 2020) == {"M": 7}
    assert ledger.totals() == {"M": 12}
    assert ledger.report(2, 2020)["meters"] == [{"name": "M", "quantity": 0}]


def test_a_record_torn_by_a_crash_does_not_swallow_the_next_one(tmp_path):
    ledger = sim.UsageLedger(tmp_path, service(AIRLIFT_SIM_METER="M"))
    ledger.append(1)
    month_file = next(tmp_path.glob("usage-*.jsonl"))
    with month_file.open("a") as handle:
        handle.write('{"service": "sentiment", "meter": "M", "quan')
    ledger.append(2)
    assert ledger.totals() == {"M": 3}


def test_dependent_type_refuses_to_start_without_the_address():
    custom = service(AIRLIFT_SIM_REQUIRES="AzureCognitiveServiceLayoutHost")
    with pytest.raises(sim.Refusal, match=r"AzureCognitiveServiceLayoutHost=http://"):
        sim.check_upstream({}, custom)
    assert sim.check_upstream({"azurecognitiveservicelayouthost": "http://h:5010/"},
                              custom) == "http://h:5010"
    assert sim.check_upstream({}, service()) == ""


def serve(tmp_path, name, upstream="", **env):
    out = tmp_path / name
    out.mkdir()
    kind = service(AIRLIFT_SIM_SERVICE=name, AIRLIFT_SIM_UNIT="request", **env)
    server = sim.SimulatorServer(0, kind, {"expires": "2030-01-01"},
                                 sim.UsageLedger(out, kind), 0, upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def call(url, method="GET"):
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_dependent_is_ready_and_answers_only_while_what_it_needs_does(tmp_path):
    layout, layout_url = serve(tmp_path, "layout")
    custom, custom_url = serve(tmp_path, "custom", upstream=layout_url,
                               AIRLIFT_SIM_REQUIRES="AzureCognitiveServiceLayoutHost",
                               AIRLIFT_SIM_PATH="/analyze")
    try:
        assert call(f"{custom_url}/ready")[0] == 200
        status, body = call(f"{custom_url}/analyze", "POST")
        assert status == 200 and body["upstream"] == layout_url
        assert call(f"{custom_url}/status")[1]["dependsOn"] == layout_url
        layout.shutdown()
        layout.server_close()
        assert call(f"{custom_url}/ready")[0] == 503
        status, body = call(f"{custom_url}/analyze", "POST")
        assert status == 502 and "does not answer /ready" in body["error"]
        # A refused request is not metered: only the one that answered counts.
        assert custom.ledger.totals() == {custom.service.meter: 1}
    finally:
        custom.shutdown()
        custom.server_close()


def test_gpu_image_refuses_to_start_without_its_device(tmp_path, capsys):
    import sim_gpu

    with pytest.raises(sim.Refusal, match=r"no GPU: .*/nvidia0 is not in the container"):
        sim_gpu.gpu_device(str(tmp_path / "nvidia0"))
    (tmp_path / "plain").write_text("")
    with pytest.raises(sim.Refusal, match="is not a character device"):
        sim_gpu.gpu_device(str(tmp_path / "plain"))
    # /dev/null stands in for the device the lab's CDI spec hands over.
    assert sim_gpu.gpu_device("/dev/null") == {"device": "/dev/null", "present": True,
                                               "major": 1, "minor": 3}
    env = {"AIRLIFT_SIM_GPU_DEVICE": str(tmp_path / "nvidia0")}
    assert sim_gpu.main(["Eula=accept"], env) == 1
    assert "no GPU" in capsys.readouterr().err
