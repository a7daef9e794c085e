"""Base for airlift's controller-only action plugins: validate arguments, then act."""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ansible.plugins.action import ActionBase

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MISSING = object()   # a referenced variable neither the host nor a role default sets


def render_as_template_module(templar: Any, source: Path, variables: dict[str, Any]) -> str:
    """A role template rendered exactly as ansible.builtin.template renders it (the
    fast path hashes the result against the host's file). The one place airlift reaches
    into Ansible's private templating helpers."""
    from ansible._internal._templating import _template_vars
    from ansible.template import trust_as_template

    variables = {**variables}
    variables.update(_template_vars.generate_ansible_template_vars(
        path=source.name, fullpath=str(source), dest_path=None,
        include_ansible_managed="ansible_managed" not in variables))
    env = templar.copy_with_new_env(searchpath=[str(source.parent)],
                                    available_variables=variables)
    text = trust_as_template(source.read_text(encoding="utf-8"))
    rendered = env.template(text, escape_backslashes=False, overrides={
        "trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"})
    return rendered or ""


def template(value: Any) -> str:
    """A default's text, where any template it holds shows (also inside lists and dicts)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


class ControllerAction(ActionBase):
    """An action that never connects to the host: it works on the controller's files.

    Subclasses declare ARGUMENT_SPEC and implement act(); the arguments arrive
    validated, with defaults applied.
    """

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC: ClassVar[dict[str, dict[str, Any]]] = {}

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        return {**result, **self.act(args, task_vars or {})}

    @abstractmethod
    def act(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        """Do the work with validated arguments; return the task result."""


class FleetAction(ControllerAction):
    """A controller action run once (C(run_once)) over every host of the play.

    Ansible's hostvars hold a host's own values (inventory, extra vars, facts) but not the
    defaults of the play's roles: a host that does not set a variable gets the role
    default. A default is templated once for the run, and again only for hosts that set
    a variable it names (once per distinct set of such values), so a host's own
    `airlift_distribute_state_dir` still reaches a default built from it.
    """

    def role_defaults(self) -> dict[str, Any]:
        """Defaults of the play's roles and of this task's role (dependencies included)."""
        defaults: dict[str, Any] = {}
        parent = self._task._parent
        while parent is not None and getattr(parent, "_play", None) is None:
            parent = getattr(parent, "_parent", None)
        if parent is not None:
            for role in parent._play.get_roles():
                defaults.update(role.get_default_vars())
        if self._task._role is not None:
            defaults.update(self._task._role.get_default_vars())
        return defaults

    def fleet_defaults(self, names: set[str], task_vars: dict[str, Any]) -> FleetDefaults:
        """The role defaults of these variables, ready to be read host by host."""
        return FleetDefaults(self._templar, self.role_defaults(), names, task_vars)


class FleetDefaults:
    """Role defaults as each host sees them, templated as few times as possible."""

    def __init__(self, templar: Any, defaults: dict[str, Any], names: set[str],
                 task_vars: dict[str, Any]) -> None:
        self._templar = templar
        self._raw = defaults
        self._task_vars = task_vars
        self._task_own = task_vars.get("hostvars", {}).get(
            task_vars.get("inventory_hostname", ""), {})
        self.names = {name for name in names if name in defaults}
        # The variables a templated default names, also through the defaults it names
        # (airlift_deploy_state_dir -> airlift_state_dir -> airlift_host_dir); an
        # over-approximation: every word.
        self._refs = {name: self._names_in(template(value))
                      for name, value in defaults.items()
                      if name in self.names and "{" in template(value)}
        self._cache: dict[tuple[str, str], Any] = {}
        self.shared = {name: self._templar.template(defaults[name]) for name in self.names
                       if name not in self._refs}

    def _names_in(self, text: str) -> list[str]:
        seen: set[str] = set()
        todo = WORD.findall(text)
        while todo:
            word = todo.pop()
            if word not in seen:
                seen.add(word)
                raw = template(self._raw.get(word, ""))
                if "{" in raw:
                    todo.extend(WORD.findall(raw))
        return sorted(seen)

    def value(self, own: Any, name: str) -> Any:
        """The default of `name` for a host whose own variables are `own`."""
        if name not in self._refs:
            return self.shared[name]
        # Only what this host or the task's host sets itself can differ between hosts.
        refs = [ref for ref in self._refs[name] if ref in own or ref in self._task_own]
        values = {ref: own[ref] if ref in own else self._raw.get(ref, MISSING)
                  for ref in refs}
        key = (name, json.dumps({ref: value if value is not MISSING else ["<unset>"]
                                for ref, value in values.items()}, sort_keys=True, default=str))
        if key not in self._cache:
            variables = {**self._task_vars, **{ref: value for ref, value in values.items()
                                               if value is not MISSING}}
            for ref in (ref for ref, value in values.items() if value is MISSING):
                variables.pop(ref, None)
            self._cache[key] = self._templar.copy_with_new_env(
                available_variables=variables).template(self._raw[name])
        return self._cache[key]

    def fingerprint(self, values: dict[str, Any]) -> str:
        """Equal for equal values: a default by identity (one object for many hosts, so
        a large catalog is not serialised per host), a host's own value by content."""
        defaults = {id(value) for value in (*self.shared.values(), *self._cache.values())}
        return json.dumps(
            [[name, ["default", id(value)] if id(value) in defaults else value]
             for name, value in sorted(values.items())],
            default=lambda other: f"<{type(other).__name__}>{other}")

    def host_values(self, own: Any, names: set[str]) -> dict[str, Any]:
        """A host's value of each name: its own when it sets one, else the role default."""
        return {name: own[name] if name in own else self.value(own, name)
                for name in names if name in own or name in self.names}
