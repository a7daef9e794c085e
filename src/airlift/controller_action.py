"""Base for airlift's controller-only action plugins: validate arguments, then act."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from ansible.plugins.action import ActionBase


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
    default, templated once for the run on the controller.
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

    def shared_values(self, names: set[str]) -> dict[str, Any]:
        """The role defaults of these variables, templated once for the whole run."""
        defaults = self.role_defaults()
        return {name: self._templar.template(defaults[name]) for name in names
                if name in defaults}

    @staticmethod
    def host_values(own: Any, names: set[str], shared: dict[str, Any]) -> dict[str, Any]:
        """A host's value of each name: its own when it sets one, else the role default."""
        return {name: own[name] if name in own else shared[name]
                for name in names if name in own or name in shared}
