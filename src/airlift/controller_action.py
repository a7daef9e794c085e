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
