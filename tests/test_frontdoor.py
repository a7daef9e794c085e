"""The front door: dependency resolution, the nginx routes and their rendering (parsed),
bad input, and `nginx -t` plus a real HTTPS round trip in the proxy image."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import jinja2
import pytest
from conftest import ROOT, free_port

from airlift import ca, catalog, frontdoor

CATALOG = catalog.load({
    "sim-layout": {"title": "layout", "image": "x", "cores": {"minimum": 1},
                   "memory": {"minimum": "1g"}},
    "sim-custom-template": {"title": "custom", "image": "y", "cores": {"minimum": 1},
                            "memory": {"minimum": "1g"},
                            "requires": [{"catalog": "sim-layout",
                                          "setting": "AzureCognitiveServiceLayoutHost"}]},
})
LAYOUT = {"name": "layout", "catalog": "sim-layout", "port": 5010}
CUSTOM = {"name": "custom", "catalog": "sim-custom-template", "port": 5011}


# -- dependencies ---------------------------------------------------------------------


def test_dependency_is_ordered_and_its_address_filled():
    plan = frontdoor.dependencies([CUSTOM, LAYOUT], CATALOG)
    assert plan["custom"] == {
        "requires": ["airlift-layout.service"], "after": ["airlift-layout.service"],
        "settings": {"AzureCognitiveServiceLayoutHost": "http://10.88.0.1:5010"},
        "depends_on": ["layout"], "needed_by": []}
    assert plan["layout"]["needed_by"] == ["custom"] and not plan["layout"]["requires"]
    assert frontdoor.start_order(plan) == ["layout", "custom"]


def test_builtin_catalog_declares_the_document_intelligence_pairs():
    builtin = catalog.load()
    plan = frontdoor.dependencies(
        [{"name": "receipt", "catalog": "di-receipt", "port": 5001},
         {"name": "read", "catalog": "di-read", "port": 5002},
         {"name": "general", "catalog": "di-general-document", "port": 5003},
         {"name": "layout", "catalog": "di-layout", "port": 5004}], builtin)
    assert plan["receipt"]["settings"] == {
        "AzureCognitiveServiceReadHost": "http://10.88.0.1:5002"}
    assert plan["general"]["requires"] == ["airlift-layout.service"]


def test_missing_dependency_is_refused_naming_the_fix():
    with pytest.raises(frontdoor.FrontdoorError) as err:
        frontdoor.dependencies([CUSTOM], CATALOG, host="lab-1")
    message = str(err.value)
    assert message.startswith("lab-1: service 'custom' (sim-custom-template) needs a "
                              "sim-layout service on the same host")
    assert "add one to this host's airlift_services" in message
    assert "settings.AzureCognitiveServiceLayoutHost" in message


def test_explicit_setting_points_elsewhere_without_ordering():
    custom = {**CUSTOM, "settings": {"azurecognitiveservicelayouthost": "http://other:5000"}}
    plan = frontdoor.dependencies([custom], CATALOG)
    assert plan["custom"]["requires"] == [] and plan["custom"]["settings"] == {}


def test_several_candidates_need_depends_on():
    second = {"name": "layout-2", "catalog": "sim-layout", "port": 5012}
    with pytest.raises(frontdoor.FrontdoorError, match=r"choose one with depends_on"):
        frontdoor.dependencies([CUSTOM, LAYOUT, second], CATALOG)
    chosen = {**CUSTOM, "depends_on": {"sim-layout": "layout-2"}}
    plan = frontdoor.dependencies([chosen, LAYOUT, second], CATALOG)
    assert plan["custom"]["settings"]["AzureCognitiveServiceLayoutHost"].endswith(":5012")
    wrong = {**CUSTOM, "depends_on": {"sim-layout": "nope"}}
    with pytest.raises(frontdoor.FrontdoorError, match="no sim-layout service of that name"):
        frontdoor.dependencies([wrong, LAYOUT], CATALOG)


def test_cycle_is_refused():
    looped = catalog.merge(CATALOG, {"sim-layout": {"requires": [
        {"catalog": "sim-custom-template", "setting": "CustomHost"}]}})
    with pytest.raises(frontdoor.FrontdoorError) as err:
        frontdoor.dependencies([CUSTOM, LAYOUT], looped)
    assert "cycle (custom -> layout -> custom)" in str(err.value)
    assert "remove one of these requires" in str(err.value)


def test_bad_requires_in_the_catalog_names_the_entry():
    bad = catalog.merge(CATALOG, {"sim-custom-template": {"requires": [
        {"catalog": "sim-nothing", "setting": "X"}]}})
    with pytest.raises(frontdoor.FrontdoorError, match="unknown catalog 'sim-nothing'"):
        frontdoor.dependencies([CUSTOM, LAYOUT], bad)


def test_find_cycle_and_start_order_on_a_chain():
    assert frontdoor.find_cycle({"a": ["b"], "b": ["c"], "c": []}) == []
    assert frontdoor.find_cycle({"a": ["a"]}) == ["a", "a"]
    plan = {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["c"]}, "c": {"depends_on": []}}
    assert frontdoor.start_order(plan) == ["c", "b", "a"]


# -- routes and the rendered nginx.conf -----------------------------------------------

SERVICES = [
    {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000},
    {"name": "read", "catalog": "sim-read", "port": 5001,
     "frontdoor": {"port": 8443, "client_certs": True, "allow": ["192.0.2.0/24"]}},
    {"name": "layout", "catalog": "sim-layout", "port": 5002, "frontdoor": False},
]


def render(plan: dict) -> str:
    templates = ROOT / "roles/airlift_frontdoor/templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template("nginx.conf.j2").render(
        ansible_managed="managed", __airlift_frontdoor_plan=plan)


def render_unit(plan: dict, engine: str = "podman") -> str:
    templates = ROOT / "roles/airlift_frontdoor/templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["dirname"] = os.path.dirname
    return env.get_template("frontdoor.service.j2").render(
        ansible_managed="managed", __airlift_frontdoor_plan=plan,
        __airlift_frontdoor_image_id="feed42", airlift_frontdoor_config_dir="/etc/af",
        airlift_frontdoor_log_dir="/var/log/af", airlift_frontdoor_run_options=["--x=1"],
        airlift_container_engine=engine)


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_proxy_unit_runs_on_the_host_network_pinned_and_independent_of_services(
        tmp_path, engine):
    import airlift_snapshot

    text = render_unit(frontdoor.routes(SERVICES, allowed_networks=["10.0.0.0/8"]), engine)
    start = " ".join(text.replace("\\\n", " ").split("ExecStart=", 1)[1].splitlines()[0].split())
    assert "--network host" in start and "--x=1 feed42 /usr/sbin/nginx" in start
    assert f"--volume /etc/af/nginx.conf:{frontdoor.CONTAINER_CONF}:ro" in start
    assert f"--volume /etc/af/tls:{frontdoor.CONTAINER_TLS_DIR}:ro" in start
    assert f"--volume /var/log/af:{frontdoor.CONTAINER_LOG_DIR}" in start
    assert start.startswith(f"/usr/bin/{engine} run ")
    assert f"ExecReload=/usr/bin/{engine} exec airlift-frontdoor /usr/sbin/nginx" in text
    # No ordering on the services either way: restarting one leaves the other alone
    # (a docker unit needs only the daemon).
    assert [line for line in text.splitlines()
            if line.startswith(("Requires=", "BindsTo=", "PartOf=")) or "airlift-s" in line] \
        == (["Requires=docker.service"] if engine == "docker" else [])
    # Rotation removes images no service unit names: the proxy's must not look like one.
    unit = tmp_path / "airlift-frontdoor.service"
    unit.write_text(text)
    assert airlift_snapshot.image_ids_in_units({"units/airlift-frontdoor.service":
                                                {"path": str(unit)}}) == []


def parse_nginx(text: str) -> list:
    """nginx.conf as [(directive, [args], children or None)], comments dropped."""
    tokens, token, quote = [], "", None
    for line in text.splitlines():
        for char in line:
            if quote:
                token += char
                if char == quote:
                    quote = None
            elif char == "#":
                break
            elif char in "'\"":
                token, quote = token + char, char
            elif char.isspace() or char in "{};":
                if token:
                    tokens.append(token)
                    token = ""
                if char in "{};":
                    tokens.append(char)
            else:
                token += char
        if token and not quote:
            tokens.append(token)
            token = ""
        elif quote:
            token += "\n"
    position = 0

    def block() -> list:
        nonlocal position
        out, words = [], []
        while position < len(tokens):
            tok = tokens[position]
            position += 1
            if tok == ";":
                out.append((words[0], words[1:], None))
                words = []
            elif tok == "{":
                out.append((words[0], words[1:], block()))
                words = []
            elif tok == "}":
                assert not words, words
                return out
            else:
                words.append(tok)
        assert not words, words
        return out

    return block()


def directives(children: list, name: str) -> list:
    return [(args, kids) for directive, args, kids in children if directive == name]


def test_routes_port_per_service_with_defaults_and_overrides():
    plan = frontdoor.routes(SERVICES, allowed_networks=["10.20.0.0/16"], port_offset=10000)
    servers = {server["name"]: server for server in plan["servers"]}
    assert set(servers) == {"sentiment", "read"}            # layout stays off the front door
    assert servers["sentiment"] == {
        "name": "sentiment", "catalog": "sim-sentiment", "port": 15000, "listen": "15000",
        "upstream": "127.0.0.1:5000", "allow": ["10.20.0.0/16"], "client_certs": False}
    assert servers["read"]["port"] == 8443 and servers["read"]["client_certs"]
    assert servers["read"]["allow"] == ["192.0.2.0/24"]
    assert plan["ports"] == [8443, 15000]


def test_rendered_config_has_tls_access_control_and_proxying():
    plan = frontdoor.routes(SERVICES, allowed_networks=["10.20.0.0/16", "2001:db8::/32"],
                            listen_address="192.0.2.1")
    tree = parse_nginx(render(plan))
    [(_, http)] = directives(tree, "http")
    assert directives(http, "ssl_certificate")[0][0] == ["/etc/airlift/frontdoor/tls/server.crt"]
    assert directives(http, "ssl_certificate_key")[0][0] == [
        "/etc/airlift/frontdoor/tls/server.key"]
    assert directives(http, "ssl_protocols")[0][0] == ["TLSv1.2", "TLSv1.3"]
    assert directives(http, "access_log")[0][0] == [
        "/var/log/airlift-frontdoor/access.log", "airlift"]
    [(map_args, mapping)] = directives(http, "map")
    assert map_args == ["$server_port", "$airlift_service"]
    assert {d: a for d, a, _ in mapping} == {"default": ['""'], "15000": ["sentiment"],
                                              "8443": ["read"]}
    servers = [kids for _, kids in directives(http, "server")]
    assert len(servers) == 2
    sentiment, read = servers
    assert directives(sentiment, "listen")[0][0] == ["192.0.2.1:15000", "ssl"]
    assert [a for a, _ in directives(sentiment, "allow")] == [["10.20.0.0/16"],
                                                              ["2001:db8::/32"]]
    assert directives(sentiment, "deny")[0][0] == ["all"]
    assert not directives(sentiment, "ssl_verify_client")
    [(location, body)] = directives(sentiment, "location")
    assert location == ["/"]
    assert directives(body, "proxy_pass")[0][0] == ["http://127.0.0.1:5000"]
    assert directives(read, "ssl_verify_client")[0][0] == ["on"]
    assert directives(read, "ssl_client_certificate")[0][0] == [
        "/etc/airlift/frontdoor/tls/ca.crt"]
    assert [a for a, _ in directives(read, "allow")] == [["192.0.2.0/24"]]
    # The order matters to nginx: every allow before the final deny.
    names = [d for d, _, _ in read]
    assert names.index("deny") > max(i for i, d in enumerate(names) if d == "allow")


@pytest.mark.parametrize("services, options, message", [
    ([{"name": "Bad Name", "port": 5000}], {}, "the proxy cannot route this name"),
    ([{"name": "a;b", "port": 5000}], {}, "the proxy cannot route this name"),
    ([{"name": "a", "port": 5000}], {"allowed_networks": ["10.0.0.1/8"]},
     "has host bits set: write 10.0.0.0/8"),
    ([{"name": "a", "port": 5000}], {"allowed_networks": ["intranet"]},
     "is not a network in CIDR form"),
    ([{"name": "a", "port": 5000}], {"allowed_networks": ["all"]}, "write 0.0.0.0/0"),
    ([{"name": "a", "port": 5000}], {"allowed_networks": []}, "no client network may reach it"),
    ([{"name": "a", "port": 5000}, {"name": "b", "port": 15000, "frontdoor": False}], {},
     "front-door port 15000 is also the port of service 'b'"),
    ([{"name": "a", "port": 5000, "frontdoor": {"port": 8443}},
      {"name": "b", "port": 5001, "frontdoor": {"port": 8443}}], {},
     "is also the front-door port of 'a'"),
    ([{"name": "a", "port": 60000}], {}, "is not a port: set frontdoor.port"),
    ([{"name": "a", "port": "http"}], {}, "the proxy cannot route it"),
    ([{"name": "a", "port": 5000, "frontdoor": {"alow": []}}], {}, "unknown frontdoor key"),
    ([{"name": "frontdoor", "port": 5000}], {}, "rename the service"),
    ([{"name": "a", "port": 5000}], {"listen_address": "eth0"}, "is not an IP address"),
])
def test_bad_input_names_the_fix(services, options, message):
    options = {"allowed_networks": ["10.0.0.0/8"], **options}
    with pytest.raises(frontdoor.FrontdoorError, match=re.escape(message)):
        frontdoor.routes(services, host="lab-1", **options)


def test_every_problem_is_listed_at_once():
    with pytest.raises(frontdoor.FrontdoorError) as err:
        frontdoor.routes([{"name": "A", "port": 1}, {"name": "b", "port": 2}],
                         allowed_networks=["x"], host="lab-1")
    text = str(err.value)
    assert text.startswith("lab-1: ") and "cannot route this name" in text and "'x'" in text


@pytest.fixture(scope="module")
def filters():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "airlift_frontdoor_filter", ROOT / "plugins/filter/airlift_frontdoor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_filters_return_plans_and_raise_ansible_errors(filters, tmp_path):
    from ansible.errors import AnsibleFilterError

    routes = filters["airlift_frontdoor_routes"](SERVICES, allowed_networks=["10.0.0.0/8"])
    assert routes["ports"] == [8443, 15000]
    with pytest.raises(AnsibleFilterError, match="not a network"):
        filters["airlift_frontdoor_routes"](SERVICES, allowed_networks=["nope"])
    ca.init(tmp_path / "ca")
    issued = ca.issue_server(tmp_path / "ca", "lab-1", ["lab-1"])
    files = filters["airlift_frontdoor_tls_files"](str(tmp_path / "ca"), "lab-1")
    assert files == {"cert": str(issued.cert), "key": str(issued.key),
                     "ca": str(tmp_path / "ca" / "ca.crt")}
    assert filters["airlift_frontdoor_cert_problems"](
        files["cert"], ["lab-1"], files["ca"]) == []
    assert "not name lab-2.example" in " ".join(filters["airlift_frontdoor_cert_problems"](
        files["cert"], ["lab-1", "lab-2.example"], files["ca"]))
    with pytest.raises(AnsibleFilterError, match="host"):
        filters["airlift_frontdoor_tls_files"](str(tmp_path / "ca"), "../escape")


# -- the proxy image: nginx -t on the rendered file, and a real HTTPS round trip -------

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman")


@pytest.fixture(scope="module")
def proxy_image():
    from airlift import lab

    return lab.ensure_proxy_image()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A lab CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    base = tmp_path_factory.mktemp("frontdoor")
    ca.init(base / "ca")
    server = ca.issue_server(base / "ca", "proxy", ["localhost", "127.0.0.1"])
    client = ca.issue_client(base / "ca", "ops")
    tls_dir = base / "tls"
    tls_dir.mkdir()
    shutil.copy(server.cert, tls_dir / "server.crt")
    shutil.copy(server.key, tls_dir / "server.key")
    shutil.copy(base / "ca" / "ca.crt", tls_dir / "ca.crt")
    return {"dir": tls_dir, "ca": base / "ca" / "ca.crt", "client": client, "base": base}


def proxy_args(image: str, tls: dict, conf, logs, *extra: str) -> list[str]:
    return ["podman", "run", "--rm", *extra,
            "--volume", f"{conf}:{frontdoor.CONTAINER_CONF}:ro",
            "--volume", f"{tls['dir']}:{frontdoor.CONTAINER_TLS_DIR}:ro",
            "--volume", f"{logs}:{frontdoor.CONTAINER_LOG_DIR}", image]


@needs_podman
def test_nginx_accepts_the_rendered_config(proxy_image, tls, tmp_path):
    plan = frontdoor.routes(SERVICES, allowed_networks=["10.20.0.0/16"])
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(plan))
    logs = tmp_path / "logs"
    logs.mkdir()
    args = proxy_args(proxy_image, tls, conf, logs, "--network", "none")
    proc = subprocess.run([*args, "nginx", "-t", "-c", frontdoor.CONTAINER_CONF],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr and "test is successful" in proc.stderr


class Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"backend {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def https_get(port: int, tls: dict, path: str, client: bool = False) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(tls["ca"]))
    if client:
        context.load_cert_chain(tls["client"].cert, tls["client"].key)
    try:
        with urllib.request.urlopen(f"https://localhost:{port}{path}", context=context,
                                    timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


@needs_podman
def test_https_through_the_proxy_allows_denies_and_checks_client_certs(proxy_image, tls,
                                                                         tmp_path):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    upstream = backend.server_address[1]
    open_port, denied_port, cert_port = free_port(), free_port(), free_port()
    services = [
        {"name": "open", "port": upstream, "frontdoor": {"port": open_port}},
        {"name": "denied", "port": upstream, "frontdoor": {"port": denied_port,
                                                           "allow": ["192.0.2.0/24"]}},
        {"name": "mtls", "port": upstream, "frontdoor": {"port": cert_port,
                                                         "client_certs": True}},
    ]
    plan = frontdoor.routes(services, allowed_networks=["127.0.0.0/8"],
                            listen_address="127.0.0.1")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(plan))
    logs = tmp_path / "logs"
    logs.mkdir()
    name = f"airlift-frontdoor-test-{open_port}"
    args = proxy_args(proxy_image, tls, conf, logs, "--detach", "--name", name,
                      "--network", "host")
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", cert_port)) == 0:
                    break
            time.sleep(0.2)
        assert https_get(open_port, tls, "/ready") == (200, "backend /ready")
        assert https_get(open_port, tls, "/swagger") == (200, "backend /swagger")
        assert https_get(denied_port, tls, "/ready")[0] == 403
        assert https_get(cert_port, tls, "/status")[0] == 400   # no client certificate
        assert https_get(cert_port, tls, "/status", client=True) == (200, "backend /status")
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "2", name],
                       capture_output=True, check=False, timeout=60)
        backend.shutdown()
    lines = (logs / "access.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {(r["service"], r["status"]) for r in records} >= {
        ("open", 200), ("denied", 403), ("mtls", 400), ("mtls", 200)}
    assert any(r["client_cert"].startswith("CN=ops") for r in records)
