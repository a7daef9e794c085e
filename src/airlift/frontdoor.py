"""The front door of a host: services that depend on each other, and the nginx routes.

Dependencies. A catalog entry may declare what it needs on the same host:

    di-custom-template:
      requires:
        - {catalog: di-layout, setting: AzureCognitiveServiceLayoutHost}

For each service, `dependencies` returns the systemd units it must be ordered after
(`Requires=` and `After=`) and the address setting filled in as
`http://<address host>:<port of the dependency>`. The deploy role passes the container
bridge's gateway (10.88.0.1 for podman, 172.17.0.1 for docker): the host as its
containers see it, where the dependency's published port is reachable (deploy also
publishes a needed service there when services bind to loopback, `needed_by` says
which). Not podman's host.containers.internal: podman 4 points that name at the host's
first non-loopback address, where a loopback-bound port is not reachable.
A service that sets the setting itself keeps its value and gets no
ordering (it points elsewhere); with several candidates on a host it chooses one with
`depends_on: {<catalog>: <service name>}`.

Routes. One HTTPS server per exposed service, on its own port (the service's port plus
an offset, or `frontdoor.port`), never a path prefix: the containers' APIs, /swagger and
the usage endpoints use absolute paths that a prefix would break. Each server checks
the allowed client networks (allow ...; deny all), optionally a client certificate
signed by the airlift CA, and proxies everything (/ready, /status, /swagger, the API)
to 127.0.0.1:<service port>. Access goes to one JSON-lines log per host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from airlift import layout

DEPENDENCY_HOST = "10.88.0.1"  # podman's default bridge gateway
RESERVED_NAME = "frontdoor"    # the proxy's unit is airlift-frontdoor.service
# Paths inside the proxy container (lab/proxy; the role mounts the host's files there).
CONTAINER_CONF = "/etc/airlift/frontdoor/nginx.conf"
CONTAINER_TLS_DIR = "/etc/airlift/frontdoor/tls"
CONTAINER_LOG_DIR = "/var/log/airlift-frontdoor"
DEFAULT_PORT_OFFSET = 10000
FRONTDOOR_KEYS = ("port", "allow", "client_certs", "expose")
# One DNS label: safe in unit names, nginx variables and log lines.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")


class FrontdoorError(ValueError):
    """The inventory cannot be served as asked; the message names the fix."""


def unit_name(service_name: str) -> str:
    return layout.host.unit_name(service_name)


def _fail(problems: list[str], host: str) -> None:
    if problems:
        prefix = f"{host}: " if host else ""
        raise FrontdoorError(prefix + "; ".join(problems))


# -- dependencies ---------------------------------------------------------------------


def catalog_requires(catalog: Mapping[str, Any], key: str) -> list[dict[str, str]]:
    """The entry's `requires`, checked: each names a known catalog key and a setting."""
    requires = (catalog.get(key) or {}).get("requires") or []
    fix = f"fix catalog entry {key!r} (airlift_catalog_overrides)"
    if not isinstance(requires, list):
        raise FrontdoorError(f"catalog entry {key!r}: requires must be a list of "
                             f"{{catalog, setting}}: {fix}")
    out = []
    for index, item in enumerate(requires):
        if not isinstance(item, Mapping) or not item.get("catalog") or not item.get("setting"):
            raise FrontdoorError(f"catalog entry {key!r}: requires[{index}] needs both "
                                 f"catalog and setting: {fix}")
        if item["catalog"] not in catalog:
            raise FrontdoorError(f"catalog entry {key!r}: requires[{index}] names unknown "
                                 f"catalog {item['catalog']!r}: {fix}")
        out.append({"catalog": str(item["catalog"]), "setting": str(item["setting"])})
    return out


def dependencies(services: Iterable[Mapping[str, Any]], catalog: Mapping[str, Any],
                 host: str = "", address_host: str = DEPENDENCY_HOST,
                 address: str = "http://{host}:{port}") -> dict[str, dict]:
    """Per service name: requires/after (unit names), settings to add, depends_on, needed_by.

    `address` is formatted with host (address_host), name and port of the needed service:
    other targets reach it by name (compose: http://{name}:5000). Refuses (FrontdoorError
    listing every problem) a dependency missing on this host, an ambiguous one, or a cycle.
    """
    services = list(services)
    by_name = {service["name"]: service for service in services}
    problems: list[str] = []
    plan: dict[str, dict[str, Any]] = {
        service["name"]: {"requires": [], "after": [], "settings": {}, "depends_on": [],
                          "needed_by": []}
        for service in services}
    for service in services:
        name, key = service["name"], service["catalog"]
        if key not in catalog:
            problems.append(f"service {name!r}: unknown catalog entry {key!r} (use a key of "
                            "airlift_catalog or add it with airlift_catalog_overrides)")
            continue
        chosen = service.get("depends_on") or {}
        own_settings = {str(k).lower() for k in (service.get("settings") or {})}
        for requirement in catalog_requires(catalog, key):
            wanted, setting = requirement["catalog"], requirement["setting"]
            if setting.lower() in own_settings:
                continue  # the operator points it elsewhere: no ordering on this host
            candidates = [other for other in services
                          if other["catalog"] == wanted and other["name"] != name]
            if wanted in chosen:
                pick = by_name.get(chosen[wanted])
                if pick is None or pick["catalog"] != wanted:
                    problems.append(
                        f"service {name!r}: depends_on names {chosen[wanted]!r} for "
                        f"{wanted}, but this host has no {wanted} service of that name "
                        f"(have: {', '.join(o['name'] for o in candidates) or 'none'})")
                    continue
                candidates = [pick]
            if not candidates:
                problems.append(
                    f"service {name!r} ({key}) needs a {wanted} service on the same host "
                    f"for {setting}: add one to this host's airlift_services (e.g. "
                    f"{{name: {wanted}, catalog: {wanted}, port: <free port>}}), or set "
                    f"settings.{setting} of {name!r} to one elsewhere")
                continue
            if len(candidates) > 1:
                problems.append(
                    f"service {name!r} ({key}) could use any of "
                    f"{', '.join(o['name'] for o in candidates)} for {setting}: choose one "
                    f"with depends_on: {{{wanted}: <name>}}")
                continue
            dependency = candidates[0]
            unit = unit_name(dependency["name"])
            entry = plan[name]
            for field in ("requires", "after"):
                if unit not in entry[field]:
                    entry[field].append(unit)
            if dependency["name"] not in entry["depends_on"]:
                entry["depends_on"].append(dependency["name"])
            entry["settings"][setting] = address.format(
                host=address_host, name=dependency["name"], port=dependency["port"])
            if name not in plan[dependency["name"]]["needed_by"]:
                plan[dependency["name"]]["needed_by"].append(name)
    cycle = find_cycle({name: entry["depends_on"] for name, entry in plan.items()})
    if cycle:
        problems.append(f"services depend on each other in a cycle ({' -> '.join(cycle)}), "
                        "so none could start first: remove one of these requires from the "
                        "catalog (airlift_catalog_overrides) or set the setting explicitly "
                        "on one service")
    _fail(problems, host)
    return plan


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when the graph has none."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def start_order(plan: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Service names, every dependency before what needs it (stable otherwise)."""
    order: list[str] = []
    done: set[str] = set()

    def place(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dependency in plan[name]["depends_on"]:
            place(dependency)
        order.append(name)

    for name in plan:
        place(name)
    return order


# -- routes ---------------------------------------------------------------------------


def _network(value: Any, where: str) -> tuple[str | None, str | None]:
    """(normalised CIDR, None) or (None, problem)."""
    text = str(value).strip()
    if text.lower() in {"all", "any", "*"}:
        return None, (f"{where}: {text!r} is not a network: write 0.0.0.0/0 (and ::/0) to "
                      "allow every client")
    try:
        return ipaddress.ip_network(text, strict=True).with_prefixlen, None
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, (f"{where}: {text!r} is not a network in CIDR form (like 10.20.0.0/16 "
                      "or 192.0.2.7/32)")
    return None, (f"{where}: {text!r} has host bits set: write {loose.with_prefixlen} "
                  "for the network, or the address with /32 (/128) for one client")


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 1 <= port <= 65535 and str(port) == str(value).strip() else None


def routes(services: Iterable[Mapping[str, Any]], allowed_networks: Iterable[str] = (),
           client_certs: bool = False, port_offset: int = DEFAULT_PORT_OFFSET,
           listen_address: str = "", upstream_address: str = "127.0.0.1",
           host_log_dir: str = layout.host.OUTPUT_DIR + "/frontdoor",
           output_dir: str = layout.host.OUTPUT_DIR,
           client_max_body_size: str = "100m", proxy_timeout: int = 300,
           host: str = "") -> dict[str, Any]:
    """What nginx.conf.j2 renders: one HTTPS server per exposed service, and the paths.

    Per service, `frontdoor: {port, allow, client_certs, expose}` overrides the host's
    defaults (`frontdoor: false` is `expose: false`: reachable only from the host, e.g.
    a dependency other containers use). Every problem is listed, each naming the fix.
    """
    services = list(services)
    problems: list[str] = []
    service_ports: dict[int, str] = {}
    for service in services:
        port = _port(service.get("port"))
        if port is not None:
            service_ports.setdefault(port, service.get("name", "?"))
    if listen_address:
        try:
            ipaddress.ip_address(listen_address)
        except ValueError:
            problems.append(f"airlift_frontdoor_listen_address {listen_address!r} is not an "
                            "IP address: use one of the host's addresses, or '' for all")
    if not _SIZE.match(str(client_max_body_size)):
        problems.append(f"airlift_frontdoor_client_max_body_size {client_max_body_size!r}: "
                        "use a size like 100m")
    servers = []
    taken: dict[int, str] = {}
    for index, service in enumerate(services):
        name = str(service.get("name", ""))
        where = f"service {name!r}" if name else f"airlift_services[{index}]"
        if not _NAME.match(name):
            problems.append(f"{where}: the proxy cannot route this name: use lowercase "
                            "letters, digits and '-' (at most 63, e.g. sentiment-1)")
            continue
        if host_log_dir.rstrip("/") == f"{output_dir.rstrip('/')}/{name}":
            problems.append(f"{where}: its Output directory is the front door's log "
                            f"directory {host_log_dir}: rename the service or set "
                            "airlift_frontdoor_log_dir elsewhere")
        options = service.get("frontdoor", {})
        if options is False:
            options = {"expose": False}
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            problems.append(f"{where}: frontdoor must be a mapping with "
                            f"{', '.join(FRONTDOOR_KEYS)} (or false)")
            continue
        unknown = sorted(set(options) - set(FRONTDOOR_KEYS))
        if unknown:
            problems.append(f"{where}: unknown frontdoor key(s) {', '.join(unknown)}: "
                            f"known are {', '.join(FRONTDOOR_KEYS)}")
            continue
        if not options.get("expose", True):
            continue
        upstream = _port(service.get("port"))
        if upstream is None:
            problems.append(f"{where}: port {service.get('port')!r} is not a port "
                            "(1-65535): the proxy cannot route it")
            continue
        if "port" in options:
            port = _port(options["port"])
            if port is None:
                problems.append(f"{where}: frontdoor.port {options['port']!r} is not a port "
                                "(1-65535)")
                continue
        else:
            port = upstream + int(port_offset)
            if not 1 <= port <= 65535:
                problems.append(f"{where}: port {upstream} + airlift_frontdoor_port_offset "
                                f"{port_offset} = {port} is not a port: set frontdoor.port "
                                "or another offset")
                continue
        if port in service_ports:
            problems.append(f"{where}: front-door port {port} is also the port of service "
                            f"{service_ports[port]!r}: set frontdoor.port of {name!r} "
                            "(or airlift_frontdoor_port_offset) to a free port")
        elif port in taken:
            problems.append(f"{where}: front-door port {port} is also the front-door port "
                            f"of {taken[port]!r}: set a different frontdoor.port")
        taken.setdefault(port, name)
        allow = options.get("allow", list(allowed_networks))
        if isinstance(allow, str):
            allow = [allow]
        networks = []
        for network in allow or []:
            normalised, problem = _network(network, f"{where}: allowed network")
            if problem:
                problems.append(problem)
            else:
                networks.append(normalised)
        if not allow:
            problems.append(f"{where}: no client network may reach it: set "
                            "airlift_frontdoor_allowed_networks (or frontdoor.allow of the "
                            "service), e.g. [10.20.0.0/16]; use frontdoor: false to keep it "
                            "off the front door")
        listen = f"{port}"
        if listen_address:
            bracket = f"[{listen_address}]" if ":" in listen_address else listen_address
            listen = f"{bracket}:{port}"
        servers.append({
            "name": name,
            "catalog": service.get("catalog", ""),
            "port": port,
            "listen": listen,
            "upstream": f"{upstream_address}:{upstream}",
            "allow": networks,
            "client_certs": bool(options.get("client_certs", client_certs)),
        })
    _fail(problems, host)
    return {
        "servers": servers,
        "ports": sorted(server["port"] for server in servers),
        "client_max_body_size": str(client_max_body_size),
        "proxy_timeout": int(proxy_timeout),
        "host_log_dir": host_log_dir,
        "paths": {
            "conf": CONTAINER_CONF,
            "cert": f"{CONTAINER_TLS_DIR}/server.crt",
            "key": f"{CONTAINER_TLS_DIR}/server.key",
            "ca": f"{CONTAINER_TLS_DIR}/ca.crt",
            "log_dir": CONTAINER_LOG_DIR,
            "access_log": f"{CONTAINER_LOG_DIR}/access.log",
        },
    }
