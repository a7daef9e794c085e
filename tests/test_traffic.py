"""The demo's traffic plan: what each simulator service should meter for what is sent."""

from __future__ import annotations

import pytest

from airlift import cli, lab, traffic


def test_each_demo_service_meters_by_its_own_unit():
    planned = {item.service: item for item in traffic.plan(traffic.demo_services(), requests=4)}
    types = lab.simulator_services()
    assert set(planned) == {"sentiment", "read", "layout", "custom"}
    assert planned["sentiment"].expected == 4 * len(planned["sentiment"].body["documents"])
    assert planned["read"].expected == 4
    assert planned["custom"].meter == types["custom-template"]["meter"]
    # Through the front door: HTTPS on the service's port + 10000, the type's own path.
    assert planned["layout"].port == 15010
    assert planned["layout"].path == types["layout"]["path"]


def test_services_that_are_not_simulators_are_not_called():
    services = [{"name": "real", "catalog": "azure-sentiment", "port": 5000},
                {"name": "odd", "catalog": "sim-no-such-type", "port": 5001},
                {"name": "speech", "catalog": "sim-speech-to-text", "port": 5002}]
    planned = traffic.plan(services, requests=3, frontdoor=False)
    assert [(item.service, item.port, item.expected) for item in planned] == [
        ("speech", 5002, 3)]


@pytest.mark.parametrize(("argv", "expected"), [
    (["lab", "traffic", "--requests", "0"], "at least 1"),
    (["lab", "traffic", "--hosts", "0"], "at least 1"),
    (["lab", "traffic", "--docker-hosts", "-1"], "--docker-hosts must be 0 or more")])
def test_traffic_refuses_nothing_to_send(argv, expected, capsys):
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == cli.EXIT_BAD_INPUT
    assert expected in capsys.readouterr().err
